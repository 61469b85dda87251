// Generation's KV cache on the reference CPU backend (kv_cache_suite.ts): its
// attentionDecode against its own attentionForward over the whole prefix, and generation
// with the cache equal to generation without it on the tiny reference GPT-2s.
import { CpuBackend } from "../../lib/backends/cpu/mod.ts";
import { kvCacheSuite } from "./kv_cache_suite.ts";

kvCacheSuite("cpu", () => new CpuBackend());
