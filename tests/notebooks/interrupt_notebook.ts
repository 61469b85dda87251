/**
 * The notebook the browser tests interrupt: a small GPT on the reference backend, a training
 * loop that would run for hours (guarded by `loopGuard`, as the notebooks' loops are), and a
 * cell after it that reads the loop's variables. The cells import `lib/` as the committed
 * notebooks do, so the notebook runs from a copy under notebooks/. Each code cell's expected
 * texts are in its metadata (`tools/notebooks/notebook_checks.ts`).
 *
 * @module
 */

import type { Notebook, NotebookCell } from "../../tools/notebooks/notebook_checks.ts";

/** The index of the training cell among the notebook's cells. */
export const TRAINING_CELL = 2;
/** The index of the cell after it, which must run once the loop is interrupted. */
export const AFTER_CELL = 3;
/** The text the training cell prints at step 5: the loop is running, the guard in place. */
export const RUNNING_TEXT = "step 5, loss";
/** The line the training cell prints when an interrupt stopped it. */
export const INTERRUPTED_TEXT = "interrupted at step";
/** Seconds the training cell may take to end after Interrupt: a few of its steps at most. */
export const STOP_SECONDS = 10;

function code(source: string, expect: string[]): NotebookCell {
  return { cell_type: "code", source, metadata: { expect }, execution_count: null, outputs: [] };
}

/** The notebook, unrun. */
export function interruptNotebook(): Notebook {
  const cells: NotebookCell[] = [
    code(
      `import { keepOutputInCells } from "../lib/notebook/mod.ts";
keepOutputInCells();
import { listenForInterrupts, loopGuard } from "../lib/interrupt.ts";
listenForInterrupts();
import { CpuBackend } from "../lib/backends/cpu/mod.ts";
import { GPT } from "../lib/model/gpt.ts";
import { Tensor } from "../lib/model/tensor.ts";
import { configureOptimizers } from "../lib/train/optim.ts";

const backend = new CpuBackend();
const model = new GPT(backend, { n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 64 }, { seed: 1 });
const optimizer = configureOptimizers(model, { weightDecay: 0.0, learningRate: 1e-3 });
const tokens = Int32Array.from({ length: 4 * 16 + 1 }, (_, i) => (i * 7) % 64);
const x = Tensor.from(backend, tokens.slice(0, -1), [4, 16]);
const y = Tensor.from(backend, tokens.slice(1), [4, 16]);
console.log("model ready");`,
      ["model ready"],
    ),
    {
      cell_type: "markdown",
      source: "Training for a million steps: Kernel > Interrupt ends it after the current one.",
      metadata: {},
    },
    code(
      `let step = 0;
let lastLoss = Infinity;
const guard = loopGuard();
for (; step < 1_000_000; step++) {
  optimizer.zeroGrad();
  const { loss } = model.forward(x, y);
  loss!.backward();
  optimizer.step();
  lastLoss = await loss!.item();
  if (step % 5 === 0) console.log(\`step \${step}, loss \${lastLoss.toFixed(4)}\`);
  if (await guard.interrupted()) {
    console.log(\`interrupted at step \${step}\`);
    break;
  }
}`,
      ["step 0, loss", RUNNING_TEXT, INTERRUPTED_TEXT],
    ),
    code(
      `console.log(\`after the interrupt: \${step} steps, last loss \${Number.isFinite(lastLoss) ? "finite" : lastLoss}, \${model.numParameters()} parameters\`);`,
      ["after the interrupt:", "last loss finite"],
    ),
  ];
  const notebook = {
    cells: cells.map((cell, i) => ({ id: `cell-${i}`, ...cell })),
    metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  return notebook;
}
