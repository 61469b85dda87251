/**
 * NVRTC, CUDA's runtime compiler, through `Deno.dlopen`: compiles the kernels' source for
 * one GPU architecture into a cubin where `nvcc` is missing (a machine with the driver and
 * PyTorch's wheels but no CUDA toolkit). build.ts decides when.
 *
 * @module
 */

/** The NVRTC entry points used (nvrtc.h). */
export const NVRTC_SYMBOLS = {
  nvrtcVersion: { parameters: ["buffer", "buffer"], result: "i32" },
  nvrtcGetErrorString: { parameters: ["i32"], result: "pointer" },
  nvrtcCreateProgram: {
    parameters: ["buffer", "buffer", "buffer", "i32", "buffer", "buffer"],
    result: "i32",
  },
  nvrtcCompileProgram: { parameters: ["usize", "i32", "buffer"], result: "i32" },
  nvrtcGetProgramLogSize: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcGetProgramLog: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcGetCUBINSize: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcGetCUBIN: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcDestroyProgram: { parameters: ["buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type NvrtcSymbols = Deno.DynamicLibrary<typeof NVRTC_SYMBOLS>["symbols"];

/** An opened NVRTC library. */
export class Nvrtc {
  readonly #lib: Deno.DynamicLibrary<typeof NVRTC_SYMBOLS>;

  /** Opens NVRTC at `path` (see libraries.ts's `findCudaLibrary("nvrtc")`). */
  constructor(readonly path: string) {
    this.#lib = Deno.dlopen(path, NVRTC_SYMBOLS);
  }

  /** NVRTC's version, "13.0". */
  version(): string {
    const major = new Int32Array(1), minor = new Int32Array(1);
    this.#check(this.#nv.nvrtcVersion(major, minor), "nvrtcVersion");
    return `${major[0]}.${minor[0]}`;
  }

  /**
   * Compiles `source` (named `name` in messages) with `options` into a cubin.
   *
   * @throws {Error} with NVRTC's log when the compilation fails.
   */
  compileToCubin(
    source: string,
    name: string,
    options: string[],
  ): { cubin: Uint8Array; log: string } {
    const nv = this.#nv;
    const prog = new BigUint64Array(1);
    this.#check(
      nv.nvrtcCreateProgram(prog, cString(source), cString(name), 0, null, null),
      "nvrtcCreateProgram",
    );
    try {
      // char* options[]: pointers to NUL-terminated strings, kept alive by `strings`
      const strings = options.map(cString);
      const pointers = new BigUint64Array(new ArrayBuffer(8 * Math.max(1, strings.length)));
      strings.forEach((s, i) => (pointers[i] = addressOf(s)));
      const compiled = nv.nvrtcCompileProgram(prog[0], strings.length, pointers);
      const log = this.#log(prog[0]);
      if (compiled !== 0) {
        throw new Error(`NVRTC could not compile ${name}: ${this.#errorString(compiled)}\n${log}`);
      }
      const size = new BigUint64Array(1);
      this.#check(nv.nvrtcGetCUBINSize(prog[0], size), "nvrtcGetCUBINSize");
      const cubin = new Uint8Array(new ArrayBuffer(Number(size[0])));
      this.#check(nv.nvrtcGetCUBIN(prog[0], cubin), "nvrtcGetCUBIN");
      return { cubin, log };
    } finally {
      nv.nvrtcDestroyProgram(prog);
    }
  }

  /** Closes the library. */
  close(): void {
    this.#lib.close();
  }

  get #nv(): NvrtcSymbols {
    return this.#lib.symbols;
  }

  #log(prog: bigint): string {
    const size = new BigUint64Array(1);
    if (this.#nv.nvrtcGetProgramLogSize(prog, size) !== 0 || size[0] <= 1n) return "";
    const buf = new Uint8Array(Number(size[0]));
    if (this.#nv.nvrtcGetProgramLog(prog, buf) !== 0) return "";
    return new TextDecoder().decode(buf.subarray(0, buf.length - 1));
  }

  #check(result: number, what: string): void {
    if (result !== 0) throw new Error(`${what} failed: ${this.#errorString(result)} (${result})`);
  }

  #errorString(result: number): string {
    const p = this.#nv.nvrtcGetErrorString(result);
    return p ? Deno.UnsafePointerView.getCString(p) : `nvrtcResult ${result}`;
  }
}

/** A NUL-terminated copy of `s` in memory of its own (an ArrayBuffer never moves). */
function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  out.set(bytes);
  return out;
}

function addressOf(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}
