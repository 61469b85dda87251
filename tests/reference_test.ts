// The reference CPU backend against PyTorch's answers for the tiny GPT-2.
import { CpuBackend } from "../lib/backends/cpu/mod.ts";
import { referenceSuite } from "./reference_suite.ts";

referenceSuite("cpu", () => new CpuBackend());
