// The reference CPU backend against PyTorch's answers: the tiny GPT-2 suite, then the full-size
// GPT-2 124M check (about a minute). Its ops' gradients: tests/model/ops_test.ts.
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { gpt2HashSuite } from "./gpt2_124m_suite.ts";
import { referenceSuite } from "./reference_suite.ts";

referenceSuite("cpu", () => new CpuBackend());
gpt2HashSuite("cpu", () => new CpuBackend());
