// The full-size GPT-2 124M check on the reference CPU backend (about a minute).
import { CpuBackend } from "../lib/backends/cpu/mod.ts";
import { gpt2HashSuite } from "./gpt2_124m_suite.ts";

gpt2HashSuite("cpu", () => new CpuBackend());
