// lib/eval/wilson.ts: the 95% Wilson score interval against values worked out by hand, and
// HellaSwag's terminal line with it.
import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import { formatAccuracy, formatInterval, wilsonInterval } from "../../lib/eval/wilson.ts";

/** Asserts |actual - expected| <= 1e-4 for both ends. */
function near(actual: { low: number; high: number }, low: number, high: number): void {
  ok(
    Math.abs(actual.low - low) <= 1e-4 && Math.abs(actual.high - high) <= 1e-4,
    `expected ${low}-${high}, found ${actual.low}-${actual.high}`,
  );
}

Deno.test("wilsonInterval: 35/100, worked by hand", () => {
  // p = 0.35, n = 100, z = 1.96, z^2 = 3.8416:
  //   denominator = 1 + z^2/n = 1.038416
  //   centre = (p + z^2/(2n)) / denominator = (0.35 + 0.019208) / 1.038416 = 0.355549
  //   half = z * sqrt(p(1-p)/n + z^2/(4n^2)) / denominator
  //        = 1.96 * sqrt(0.002275 + 0.00009604) / 1.038416 = 1.96 * 0.048693 / 1.038416 = 0.091908
  //   interval = 0.355549 -+ 0.091908 = 0.2636-0.4475
  near(wilsonInterval(35, 100), 0.2636, 0.4475);
});

Deno.test("wilsonInterval: the ends, where the Wald interval collapses to a point", () => {
  // 0/10: centre = (z^2/20) / 1.38416 = 0.192080 / 1.38416 = 0.138770;
  //   half = 1.96 * sqrt(3.8416/400) / 1.38416 = 1.96 * 0.098000 / 1.38416 = 0.138770
  //   -> 0 to 2 * 0.138770 = 0.2775
  near(wilsonInterval(0, 10), 0, 0.2775);
  // 10/10 mirrors it: 1 - 0.2775 = 0.7225 to 1
  near(wilsonInterval(10, 10), 0.7225, 1);
  const { low, high } = wilsonInterval(0, 10);
  ok(low >= 0 && high <= 1, `${low}-${high}`);
});

Deno.test("wilsonInterval: the full validation set narrows it to about +-0.009", () => {
  // 2959/10042 (GPT-2 124M's 0.2947 acc_norm): p = 0.294662, z^2/n = 0.000382547,
  //   centre = (0.294662 + 0.000191274) / 1.000382547 = 0.294740,
  //   half = 1.96 * sqrt(0.294662 * 0.705338 / 10042 + 3.8416 / (4 * 10042^2)) / 1.000382547
  //        = 1.96 * sqrt(2.069651e-5 + 9.52e-9) / 1.000382547 = 1.96 * 0.0045504 / 1.00038 = 0.008915
  //   -> 0.2858-0.3037
  near(wilsonInterval(2959, 10042), 0.2858, 0.3037);
});

Deno.test("wilsonInterval: n = 0 and counts outside [0, n] are refused", () => {
  throws(() => wilsonInterval(0, 0), /Expected 0 <= successes <= n and n > 0, found 0 of 0/);
  throws(() => wilsonInterval(5, 4), /found 5 of 4/);
  throws(() => wilsonInterval(-1, 4), /found -1 of 4/);
});

Deno.test("formatAccuracy: HellaSwag's terminal line with its interval", () => {
  assertEquals(
    formatAccuracy("HellaSwag acc_norm", 35, 100),
    "HellaSwag acc_norm: 35/100 = 0.3500 (95% CI 0.264-0.447, n=100)",
  );
  assertEquals(formatInterval(0, 10), "95% CI 0.000-0.278, n=10");
  assertEquals(formatAccuracy("acc", 0, 0), "acc: 0/0 (no examples)");
});
