// Interrupts end long loops (lib/interrupt.ts): a child process that counts SIGINT runs a loop
// of synchronous work guarded by loopGuard; SIGINT sent mid-loop stops it within a few
// iterations and the process lives on to run more code; an interrupt that came before a loop
// started does not stop that loop. The notebooks' kernel spec asks Jupyter for SIGINT: with
// "message", Deno's kernel gets an interrupt request it does not act on (the browser tests'
// Interrupt then fails, tests/notebooks/).
import { ok, strictEqual } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { interruptedLine, loopGuard, requestInterrupt } from "../../lib/interrupt.ts";

const MODULE = fileURLToPath(new URL("../../lib/interrupt.ts", import.meta.url));
const KERNEL_SPEC = new URL("../../notebooks/jupyter/kernels/deno/kernel.json", import.meta.url);

Deno.test("the notebooks' kernel spec asks Jupyter to interrupt with SIGINT", async () => {
  const spec = JSON.parse(await Deno.readTextFile(KERNEL_SPEC)) as { interrupt_mode?: string };
  strictEqual(spec.interrupt_mode, "signal", `interrupt_mode in ${fileURLToPath(KERNEL_SPEC)}`);
});

Deno.test("loopGuard: only interrupts after the guard was made count", async () => {
  requestInterrupt(); // before the loop: must not stop it
  const guard = loopGuard();
  strictEqual(await guard.interrupted(), false);
  strictEqual(guard.interruptedNow(), false);
  requestInterrupt();
  strictEqual(guard.interruptedNow(), true);
  strictEqual(await guard.interrupted(), true);
  strictEqual(await loopGuard().interrupted(), false);
});

Deno.test("interruptedLine says what stopped and where", () => {
  strictEqual(interruptedLine("training", 12, 50), "interrupted: training stopped at 12 of 50");
  strictEqual(interruptedLine("sampling", 3), "interrupted: sampling stopped at 3");
});

Deno.test("SIGINT stops a guarded synchronous loop, and the process runs on", async () => {
  const script = `
import { listenForInterrupts, loopGuard, interruptedLine } from ${JSON.stringify(MODULE)};
listenForInterrupts();
console.log("ready");
const guard = loopGuard();
let i = 0;
for (; i < 100000; i++) {
  const end = performance.now() + 20; // 20 ms of synchronous work, like a kernel call
  while (performance.now() < end) { /* busy */ }
  if (await guard.interrupted()) break;
}
console.log(i < 100000 ? interruptedLine("loop", i) : "ran to the end");
const after = loopGuard(); // a new loop is not stopped by the old interrupt
console.log("next loop sees", await after.interrupted());
`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  await new Promise((r) => setTimeout(r, 300)); // mid-loop
  const sent = performance.now();
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const status = await child.status;
  const took = performance.now() - sent;
  strictEqual(status.code, 0, out);
  ok(/interrupted: loop stopped at \d+/.test(out), out);
  ok(out.includes("next loop sees false"), out);
  ok(took < 5000, `stopped ${took.toFixed(0)} ms after SIGINT`);
});
