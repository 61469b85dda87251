// The reference CPU backend against PyTorch's answers: the tiny GPT-2 suite. The full-size
// GPT-2 124M check: gpt2_124m_test.ts. Its ops' gradients: tests/model/ops_test.ts.
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { referenceSuite } from "./reference_suite.ts";

referenceSuite("cpu", () => new CpuBackend());
