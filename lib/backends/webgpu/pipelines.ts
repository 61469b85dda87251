/**
 * Compiled WGSL: one shader module per file and prelude, one compute pipeline per entry
 * point and prelude, each built on first use and kept.
 *
 * @module
 */

import {
  type KernelName,
  KERNELS,
  type KernelSpec,
  type Prelude,
  preludeKey,
  preludeSource,
} from "./kernels.ts";

/** The pipelines of the kernel table (`KERNELS`), compiled from the WGSL `sources`. */
export class PipelineCache {
  readonly #modules = new Map<string, GPUShaderModule>();
  readonly #pipelines = new Map<string, GPUComputePipeline>();

  /** `sources` holds every WGSL file's text by file name (`readWgslSources`). */
  constructor(private readonly device: GPUDevice, private readonly sources: Map<string, string>) {}

  /** The pipeline of `name` compiled with `prelude`, which must be the one its file needs. */
  get(name: KernelName, prelude?: Prelude): GPUComputePipeline {
    const key = `${name}${preludeKey(prelude)}`;
    const cached = this.#pipelines.get(key);
    if (cached) return cached;
    const spec: KernelSpec = KERNELS[name];
    if (spec.prelude !== prelude?.kind) {
      const wanted = spec.prelude ? `the ${spec.prelude} prelude` : "no prelude";
      throw new Error(`Kernel ${name} needs ${wanted}, found ${prelude?.kind ?? "none"}`);
    }
    const entries: GPUBindGroupLayoutEntry[] = [{
      binding: 0,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: "uniform", hasDynamicOffset: true },
    }];
    [...spec.bindings].forEach((kind, i) =>
      entries.push({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: kind === "r" ? "read-only-storage" : "storage" },
      })
    );
    const layout = this.device.createPipelineLayout({
      bindGroupLayouts: [this.device.createBindGroupLayout({ entries })],
    });
    const pipeline = this.device.createComputePipeline({
      label: key,
      layout,
      compute: { module: this.#module(spec.file, prelude), entryPoint: spec.entry },
    });
    this.#pipelines.set(key, pipeline);
    return pipeline;
  }

  /** The file's module: the prelude's declarations, then the file's source. */
  #module(file: string, prelude: Prelude | undefined): GPUShaderModule {
    const key = `${file}${preludeKey(prelude)}`;
    let module = this.#modules.get(key);
    if (!module) {
      const code = preludeSource(prelude) + this.sources.get(file)!;
      module = this.device.createShaderModule({ label: key, code });
      this.#modules.set(key, module);
    }
    return module;
  }
}
