// The full-size GPT-2 124M check (gpt2_124m_suite.ts) on the CPU backends: the reference
// (about a minute) and the native backend in its three builds and GEMM choices
// (native_variants.ts). WebGPU's and CUDA's run in their own test files.
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { gpt2HashSuite } from "./gpt2_124m_suite.ts";
import { NATIVE_VARIANTS } from "./native_variants.ts";

gpt2HashSuite("cpu", () => new CpuBackend());
for (const { label, backend } of NATIVE_VARIANTS) gpt2HashSuite(label, backend);
