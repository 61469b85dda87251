// lib/train/precision.ts: GradScaler's schedule (PyTorch's defaults, growth and back-off, the
// float32 range), its state round trip and the options and states it refuses.
import { deepStrictEqual as assertEquals, strictEqual, throws } from "node:assert/strict";
import { GradScaler } from "../../lib/train/precision.ts";

Deno.test("GradScaler: PyTorch's defaults; grows after growthInterval clean steps, halves on overflow", () => {
  const d = new GradScaler();
  strictEqual(d.scale, 2 ** 16);
  strictEqual(d.growthFactor, 2);
  strictEqual(d.backoffFactor, 0.5);
  strictEqual(d.growthInterval, 2000);
  for (let i = 0; i < 1999; i++) d.update(false);
  strictEqual(d.scale, 2 ** 16);
  strictEqual(d.growthTracker, 1999);
  d.update(false);
  strictEqual(d.scale, 2 ** 17);
  strictEqual(d.growthTracker, 0);

  const s = new GradScaler({ initScale: 1024, growthInterval: 3 });
  const trace: [number, number][] = [];
  for (const inf of [false, false, false, false, true, false, false, true, true, false]) {
    s.update(inf);
    trace.push([s.scale, s.growthTracker]);
  }
  assertEquals(trace, [
    [1024, 1],
    [1024, 2],
    [2048, 0], // the third clean step in a row grows
    [2048, 1],
    [1024, 0], // overflow: halved, the count restarts
    [1024, 1],
    [1024, 2],
    [512, 0], // an overflow one step short of growth resets the count
    [256, 0],
    [256, 1],
  ]);

  const f = new GradScaler({
    initScale: 10,
    growthFactor: 4,
    backoffFactor: 0.25,
    growthInterval: 1,
  });
  f.update(false);
  strictEqual(f.scale, 40);
  f.update(true);
  strictEqual(f.scale, 10);
});

Deno.test("GradScaler: never grows out of float32's range, never backs off to 0", () => {
  const s = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
  s.update(false);
  strictEqual(s.scale, 2 ** 127); // 2**128 is inf in float32: stays
  strictEqual(s.growthTracker, 0);
  const t = new GradScaler({ initScale: 2 ** -125 });
  for (let i = 0; i < 10; i++) t.update(true);
  strictEqual(t.scale, 2 ** -126);
});

Deno.test("GradScaler: state() and load() round-trip; bad options and states are refused by name", () => {
  const a = new GradScaler({ growthInterval: 2 });
  a.update(false);
  a.update(false);
  a.update(false);
  assertEquals(a.state(), { scale: 2 ** 17, growthTracker: 1 });
  const b = new GradScaler({ growthInterval: 2 });
  b.load(a.state());
  assertEquals(b.state(), a.state());
  b.update(false);
  strictEqual(b.scale, 2 ** 18); // the count went on from 1
  throws(() => new GradScaler({ initScale: 0 }), /initScale must be a positive number/);
  throws(() => new GradScaler({ initScale: 2 ** 128 }), /initScale .* float32's range/);
  throws(() => new GradScaler({ growthFactor: 1 }), /growthFactor must be a finite number > 1/);
  throws(() => new GradScaler({ backoffFactor: 1 }), /backoffFactor must be in \(0, 1\)/);
  throws(() => new GradScaler({ growthInterval: 0.5 }), /growthInterval must be an integer/);
  throws(() => b.load({ scale: NaN, growthTracker: 0 }), /state\.scale must be a positive/);
  throws(() => b.load({ scale: 2, growthTracker: -1 }), /state\.growthTracker must be/);
  assertEquals(b.state(), { scale: 2 ** 18, growthTracker: 0 }); // untouched by the refusals
});
