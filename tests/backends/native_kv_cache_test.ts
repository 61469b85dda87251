// Generation's KV cache on the native C backend (kv_cache_suite.ts): kernels/cpu/
// attention_decode.c against the reference backend on odd shapes, and generation with the
// cache equal to generation without it on the tiny reference GPT-2s.
import { NativeBackend } from "../../lib/backends/native/mod.ts";
import { kvCacheSuite } from "./kv_cache_suite.ts";

kvCacheSuite("native", () => NativeBackend.create());
