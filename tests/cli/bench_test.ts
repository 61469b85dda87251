// `deno task bench`'s flags (lib/cli/bench.ts): --backend picks the benchmark and bad values say
// what is expected (the benchmarks themselves take minutes; docs/measurements.md has their numbers).
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { runTask, type TaskOutput } from "../support.ts";

function bench(args: string[]): Promise<TaskOutput> {
  return runTask(["lib/cli/bench.ts", ...args]);
}

Deno.test("bench task: --help names --backend and --webgpu", async () => {
  const r = await bench(["--help"]);
  assertEquals(r.code, 0);
  ok(r.stdout.includes("--backend NAME"), r.stdout);
  ok(r.stdout.includes("--webgpu"), r.stdout);
});

Deno.test("bench task: an unknown --backend and a WebGPU size it cannot time fail clearly", async () => {
  const unknown = await bench(["--backend", "tpu"]);
  assertEquals(unknown.code, 1);
  ok(
    unknown.stderr.includes('--backend expects native, webgpu or cuda, found "tpu"'),
    unknown.stderr,
  );
  const fwd = await bench(["--backend", "webgpu", "--configs", "fwd:1x1024"]);
  assertEquals(fwd.code, 1);
  ok(fwd.stderr.includes("--backend webgpu times one training size"), fwd.stderr);
});

Deno.test("bench task: --configs sizes outside 1..1024 fail naming the flag", async () => {
  for (const item of ["train:0x64", "fwd:4x0", "train:4x2048", "train:100000x64"]) {
    const r = await bench(["--configs", item]);
    assertEquals(r.code, 1, item);
    ok(r.stderr.includes(`--configs expects B from 1 to 1024 and T from 1 to 1024`), r.stderr);
    ok(r.stderr.includes(`found "${item}"`), r.stderr);
    ok(!/floating|panic/i.test(r.stderr), r.stderr);
  }
});

Deno.test("bench task: --precisions on the native backend takes fp32 and bf16 only", async () => {
  const r = await bench(["--precisions", "fp32,tf32"]);
  assertEquals(r.code, 1);
  ok(
    r.stderr.includes(
      `--precisions on the native backend expects fp32 or bf16, found "tf32" (tf32 is --backend cuda's)`,
    ),
    r.stderr,
  );
});
