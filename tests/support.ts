/**
 * Shared helpers of the test suites: where `../shared` is, and tolerant comparisons that
 * say which tensor and which element differ.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { readSafetensors, type SafetensorsFile } from "../lib/safetensors.ts";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/** `../shared/reference`, or `$GPT2_SHARED_REFERENCE`. */
export const referenceDir: string = Deno.env.get("GPT2_SHARED_REFERENCE") ??
  join(repoRoot, "..", "shared", "reference");

/** `../shared/data`, or `$GPT2_SHARED_DATA`. */
export const sharedDataDir: string = Deno.env.get("GPT2_SHARED_DATA") ??
  join(repoRoot, "..", "shared", "data");

let reference: SafetensorsFile | null = null;

/** The PyTorch reference vectors (`reference.safetensors`), read once. */
export async function loadReference(): Promise<SafetensorsFile> {
  reference ??= await readSafetensors(join(referenceDir, "reference.safetensors"));
  return reference;
}

/**
 * Asserts |a - e| <= atol + rtol * |e| elementwise, naming the worst element on failure.
 */
export function assertClose(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { rtol = 1e-5, atol = 1e-6 }: { rtol?: number; atol?: number } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${name}: expected ${expected.length} values, found ${actual.length}`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${name}: element ${worst} is ${actual[worst]}, expected ${
        expected[worst]
      } (rtol ${rtol}, atol ${atol})`,
    );
  }
}
