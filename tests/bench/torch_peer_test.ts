// lib/bench/torch_peer.ts and lib/bench/peer_allocator.ts: which allocator the PyTorch CPU
// peer runs under, the command line and environment it gets, and its SUMMARY line read back
// (a stand-in peer script takes PyTorch's place).
import { deepStrictEqual as assertEquals, equal, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  allocatorCandidates,
  allocatorEnv,
  describeAllocator,
  findPeerAllocator,
  JEMALLOC_CONF,
} from "../../lib/bench/peer_allocator.ts";
import {
  parsePeerSummary,
  peerStepArgs,
  runTorchPeer,
  torchPeerCommand,
} from "../../lib/bench/torch_peer.ts";

const JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
const TCMALLOC = "/usr/lib64/libtcmalloc.so.4";
const noEnv = (_: string) => undefined;
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("peer allocator: jemalloc first, then tcmalloc, else glibc malloc", () => {
  const candidates = allocatorCandidates("x86_64");
  equal(candidates[0], JEMALLOC);
  ok(candidates.indexOf(TCMALLOC) > candidates.indexOf("/usr/local/lib/libjemalloc.so.2"));
  const present = (paths: string[]) => (p: string) => paths.includes(p);
  assertEquals(findPeerAllocator(noEnv, present([TCMALLOC, JEMALLOC]), "x86_64"), {
    name: "jemalloc",
    library: JEMALLOC,
  });
  assertEquals(findPeerAllocator(noEnv, present([TCMALLOC]), "x86_64"), {
    name: "tcmalloc",
    library: TCMALLOC,
  });
  assertEquals(findPeerAllocator(noEnv, present([]), "x86_64"), {
    name: "glibc malloc",
    library: null,
  });
  // Debian's folder follows the architecture
  assertEquals(
    findPeerAllocator(noEnv, present(["/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"]), "aarch64")
      .library,
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
  );
});

Deno.test("peer allocator: GPT2_TORCH_MALLOC names the library or glibc; a missing one is an error", () => {
  const everything = () => true;
  assertEquals(findPeerAllocator(envOf({ GPT2_TORCH_MALLOC: "glibc" }), everything), {
    name: "glibc malloc",
    library: null,
  });
  assertEquals(
    findPeerAllocator(
      envOf({ GPT2_TORCH_MALLOC: "/opt/lib/libtcmalloc_minimal.so.4" }),
      everything,
    ),
    { name: "tcmalloc", library: "/opt/lib/libtcmalloc_minimal.so.4" },
  );
  throws(
    () => findPeerAllocator(envOf({ GPT2_TORCH_MALLOC: "/nowhere/libjemalloc.so" }), () => false),
    /GPT2_TORCH_MALLOC expects an allocator's shared library or "glibc", found "\/nowhere\/libjemalloc\.so"/,
  );
});

Deno.test("peer allocator: preloaded ahead of LD_PRELOAD, jemalloc told to keep freed pages", () => {
  const jemalloc = { name: "jemalloc", library: JEMALLOC };
  assertEquals(allocatorEnv(jemalloc, noEnv), {
    LD_PRELOAD: JEMALLOC,
    MALLOC_CONF: "dirty_decay_ms:-1,muzzy_decay_ms:-1",
  });
  assertEquals(allocatorEnv(jemalloc, envOf({ LD_PRELOAD: "/x.so", MALLOC_CONF: "narenas:1" })), {
    LD_PRELOAD: `${JEMALLOC}:/x.so`,
  });
  assertEquals(allocatorEnv({ name: "tcmalloc", library: TCMALLOC }, noEnv), {
    LD_PRELOAD: TCMALLOC,
  });
  assertEquals(allocatorEnv({ name: "glibc malloc", library: null }, noEnv), {});
  const glibc = describeAllocator({ name: "glibc malloc", library: null }, {});
  ok(/glibc malloc page-faults every step/.test(glibc), glibc);
  ok(/apt-get install -y libjemalloc2/.test(glibc), glibc);
  ok(/labelled glibc malloc/.test(glibc), glibc);
  const je = describeAllocator(jemalloc, allocatorEnv(jemalloc, noEnv));
  ok(je.includes(`jemalloc (LD_PRELOAD=${JEMALLOC} MALLOC_CONF=${JEMALLOC_CONF})`), je);
});

Deno.test("peer command: the step's arguments, --bf16 for autocast, the allocator's environment", () => {
  const o = { mode: "train" as const, B: 2, T: 1024, warmup: 1, iters: 3 };
  assertEquals(peerStepArgs(o, "fp32"), ["train", "2", "1024", "1", "3"]);
  assertEquals(peerStepArgs(o, "bf16"), ["train", "2", "1024", "1", "3", "--bf16"]);
  assertEquals(
    torchPeerCommand("python3", "/s/torch_gpt2_step.py", peerStepArgs(o, "bf16"), {
      LD_PRELOAD: JEMALLOC,
    }),
    {
      command: "python3",
      args: ["/s/torch_gpt2_step.py", "train", "2", "1024", "1", "3", "--bf16"],
      env: { LD_PRELOAD: JEMALLOC },
    },
  );
  assertEquals(
    parsePeerSummary("torch 2.13\nSUMMARY train B=4 T=64: n=5 min_ms=10.5 tok_s_at_median=123.4\n"),
    { B: 4, T: 64, n: 5, min_ms: 10.5, tok_s_at_median: 123.4 },
  );
  equal(parsePeerSummary("iter 0: 10 ms\n"), null);
});

Deno.test("peer command: the process gets the arguments and the allocator's environment", async () => {
  const dir = await Deno.makeTempDir({ prefix: "torch_peer_" });
  try {
    // a stand-in for python3: runs the "script" with sh, which prints what it was given
    const python = join(dir, "python");
    await Deno.writeTextFile(python, '#!/bin/sh\nexec sh "$@"\n');
    await Deno.chmod(python, 0o755);
    const script = join(dir, "peer.sh");
    await Deno.writeTextFile(
      script,
      'echo "args $*"\n' +
        'case "$LD_PRELOAD" in /fake/libjemalloc.so.2) pre=1;; *) pre=0;; esac\n' +
        '[ "$MALLOC_CONF" = "dirty_decay_ms:-1,muzzy_decay_ms:-1" ] && conf=1 || conf=0\n' +
        '[ "$6" = "--bf16" ] && bf16=1 || bf16=0\n' +
        'echo "SUMMARY $1 B=$2 T=$3: tok_s_at_median=42.5 preloaded=$pre conf=$conf bf16=$bf16"\n',
    );
    const env = allocatorEnv({ name: "jemalloc", library: "/fake/libjemalloc.so.2" }, noEnv);
    const args = peerStepArgs({ mode: "train", B: 4, T: 64, warmup: 0, iters: 1 }, "bf16");
    const summary = await runTorchPeer(args, { python, script, env });
    assertEquals(summary, {
      B: 4,
      T: 64,
      tok_s_at_median: 42.5,
      preloaded: 1,
      conf: 1,
      bf16: 1,
    });
    // a peer that prints no summary is an error naming its arguments
    await Deno.writeTextFile(script, "echo no summary >&2\n");
    await rejects(
      runTorchPeer(["train", "4", "64"], { python, script }),
      /The PyTorch peer failed \(train 4 64\): no summary/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
