/**
 * The native backend's builds and GEMM choices that its suites run on, side by side in one
 * process: the default (GEMMs in the project's own kernel, OpenBLAS linked), GEMMs in OpenBLAS
 * (what `GPT2_GEMM=openblas` gives), and the library built without OpenBLAS (what
 * `GPT2_NO_BLAS=1` gives). Each is made once per test file, on first use.
 *
 * @module
 */
import { NativeBackend, type NativeOptions } from "../../lib/backends/native/mod.ts";

/** One way of building and running the native backend. */
export interface NativeVariant {
  /** The label its tests carry ("native" for the default). */
  label: string;
  /** The options it is made with. */
  options: NativeOptions;
  /** The backend, made on the first call. */
  backend: () => Promise<NativeBackend>;
}

function variant(label: string, options: NativeOptions): NativeVariant {
  let made: Promise<NativeBackend> | undefined;
  return { label, options, backend: () => made ??= NativeBackend.create(options) };
}

/** The three variants: default, GEMMs in OpenBLAS, built without OpenBLAS. */
export const NATIVE_VARIANTS: readonly NativeVariant[] = [
  variant("native", { gemm: "own", linkBlas: true }),
  variant("native (OpenBLAS GEMMs)", { gemm: "openblas", linkBlas: true }),
  variant("native (no OpenBLAS)", { gemm: "own", linkBlas: false }),
];
