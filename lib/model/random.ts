/**
 * A seeded random generator (sfc32, seeded through splitmix32) for weight init, sampling
 * and data order: the same seed gives the same numbers on every machine, and the state
 * can be saved into a checkpoint and restored.
 *
 * @module
 */

/** Seeded generator of uniform and normal numbers (like `torch.Generator().manual_seed`). */
export class Generator {
  #s = new Uint32Array(4);
  #spareNormal: number | null = null;

  constructor(seed = 1337) {
    this.manualSeed(seed);
  }

  /** Resets the generator to the sequence of `seed`. */
  manualSeed(seed: number): this {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    this.#spareNormal = null;
    for (let i = 0; i < 12; i++) this.nextU32();
    return this;
  }

  /** The next 32 random bits. */
  nextU32(): number {
    const s = this.#s;
    const t = (s[0] + s[1] + s[3]) >>> 0;
    s[3] = (s[3] + 1) >>> 0;
    s[0] = s[1] ^ (s[1] >>> 9);
    s[1] = (s[2] + (s[2] << 3)) >>> 0;
    s[2] = ((s[2] << 21) | (s[2] >>> 11)) >>> 0;
    s[2] = (s[2] + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  random(): number {
    const hi = this.nextU32() >>> 5, lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.#spareNormal !== null) {
      const z = this.#spareNormal;
      this.#spareNormal = null;
      return z;
    }
    let u = 0;
    while (u === 0) u = this.random();
    const v = this.random();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fills `out` with N(mean, std). */
  fillNormal(out: Float32Array, mean: number, std: number): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** The state, as plain numbers for a checkpoint's JSON. */
  getState(): number[] {
    return [...this.#s, this.#spareNormal ?? NaN];
  }

  /** Restores a state from `getState()`. */
  setState(state: readonly number[]): void {
    if (state.length !== 5) {
      throw new Error(`Expected a generator state of 5 numbers, found ${state.length}`);
    }
    this.#s.set(state.slice(0, 4));
    this.#spareNormal = Number.isNaN(state[4]) ? null : state[4];
  }
}
