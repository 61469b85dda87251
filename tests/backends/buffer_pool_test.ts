// lib/backends/cpu/buffer_pool.ts: arrays given back come out again, zeroed, for the same type
// and length only; foreign arrays, doubles and anything past the limit are not taken.
import { equal, notEqual, ok, throws } from "node:assert/strict";
import { BufferPool } from "../../lib/backends/cpu/buffer_pool.ts";

Deno.test("BufferPool: a given-back array serves the next take of its type and length, zeroed", () => {
  const pool = new BufferPool(1 << 20);
  const a = pool.take(100, "f32") as Float32Array;
  ok(a instanceof Float32Array && a.every((v) => v === 0));
  a.fill(3);
  pool.give(a);
  equal(pool.bytes, 400);
  notEqual(pool.take(99, "f32"), a, "another length gets a new array");
  notEqual(pool.take(100, "i32"), a, "another type gets a new array");
  const again = pool.take(100, "f32");
  equal(again, a);
  ok(again.every((v) => v === 0), "zeroed on the way out");
  equal(pool.bytes, 0);
});

Deno.test("BufferPool: arrays it did not make are ignored, one given twice is an error", () => {
  const pool = new BufferPool(1 << 20);
  const foreign = new Float32Array(100);
  pool.give(foreign);
  equal(pool.bytes, 0);
  notEqual(pool.take(100, "f32"), foreign);
  const a = pool.take(10, "i32");
  pool.give(a);
  throws(() => pool.give(a), /Int32Array\(10\) was given back twice/);
});

Deno.test("BufferPool: past its limit an array is left to the garbage collector", () => {
  const pool = new BufferPool(1000);
  const [a, b] = [pool.take(200, "f32"), pool.take(200, "f32")];
  pool.give(a);
  pool.give(b); // 800 + 800 bytes > 1000
  equal(pool.bytes, 800);
  equal(pool.take(200, "f32"), a);
  notEqual(pool.take(200, "f32"), b);
});
