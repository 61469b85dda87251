/**
 * Helpers for the notebooks: keeping each cell's output under that cell in Jupyter.
 *
 * @module
 */

export * from "./output.ts";
export * from "./source.ts";
