// lib/notebook/source.ts: declarations cut out of TypeScript source, and their display.
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  extractDeclaration,
  maskNonCode,
  showSource,
  SourceListing,
} from "../../lib/notebook/source.ts";

/** A module whose comments, strings, templates and regular expressions hold stray brackets. */
const SOURCE = [
  "import { x } from './x.ts';",
  "",
  "/** Says hello. */",
  "export class Greeter extends Base<{ a: number }> {",
  "  // a } in a comment",
  "  name = '}';",
  "  /**",
  "   * Greets, with a { in the doc.",
  "   */",
  "  greet(who: { first: string } = { first: '' }): string {",
  "    const re = /[{]+\\/}/g;",
  "    return `hi ${who.first.replace(re, `}${'{'}`)} }`;",
  "  }",
  "",
  "  constructor() {",
  "    super();",
  "  }",
  "}",
  "",
  "// the pair",
  "export function pair(n = 1 / 2): { a: number; b: number } {",
  "  return { a: n, b: n };",
  "}",
  "",
  "export interface Shape {",
  "  size: number;",
  "}",
  "",
  "export type Id = string | { id: number };",
  "",
  "export const TABLE: Record<string, number> = {",
  "  a: 1,",
  "};",
  "",
  "function after(): void {}",
  "",
].join("\n");

/** Asserts that `fn` throws an Error whose message includes `text`. */
function assertThrows(fn: () => unknown, text = ""): void {
  throws(fn, (e: unknown) => e instanceof Error && e.message.includes(text));
}

Deno.test("maskNonCode blanks comments, strings, templates and regexes, keeping offsets", () => {
  const masked = maskNonCode(SOURCE);
  assertEquals(masked.length, SOURCE.length);
  assertEquals(masked.split("\n").length, SOURCE.split("\n").length);
  const lines = masked.split("\n");
  assertEquals(lines[4].trim(), "");
  assertEquals(lines[5].trim(), "name =    ;");
  assertEquals(lines[10].trim(), `const re = ${" ".repeat("/[{]+\\/}/g".length)};`);
  // a template's text is blanked, its ${...} code and braces kept, a nested template's too
  const blanks = (text: string) => " ".repeat(text.length);
  assertEquals(
    lines[11].trim(),
    `return ${blanks("`hi $")}{who.first.replace(re, ${blanks("`}$")}{${blanks("'{'")}}${
      blanks("`")
    })}${blanks(" }`")};`,
  );
  assertEquals(lines[20], "export function pair(n = 1 / 2): { a: number; b: number } {");
});

Deno.test("extractDeclaration cuts a class with its JSDoc despite stray brackets", () => {
  const text = extractDeclaration(SOURCE, "Greeter");
  const lines = SOURCE.split("\n");
  assertEquals(text, lines.slice(2, 18).join("\n"));
});

Deno.test("extractDeclaration cuts a function past an object return type and defaults", () => {
  assertEquals(
    extractDeclaration(SOURCE, "pair"),
    [
      "// the pair",
      "export function pair(n = 1 / 2): { a: number; b: number } {",
      "  return { a: n, b: n };",
      "}",
    ].join("\n"),
  );
  assertEquals(extractDeclaration(SOURCE, "after"), "function after(): void {}");
});

Deno.test("extractDeclaration cuts interfaces, types and variables", () => {
  assertEquals(extractDeclaration(SOURCE, "Shape"), "export interface Shape {\n  size: number;\n}");
  assertEquals(extractDeclaration(SOURCE, "Id"), "export type Id = string | { id: number };");
  assertEquals(
    extractDeclaration(SOURCE, "TABLE"),
    "export const TABLE: Record<string, number> = {\n  a: 1,\n};",
  );
});

Deno.test("extractDeclaration cuts a variable whose template spans lines", () => {
  const help = 'export const HELP: string = `usage:\n  ${\n  NAMES.join(", ")\n} (default a);\n`;';
  assertEquals(extractDeclaration(`${help}\nconst NEXT = 1;\n`, "HELP"), help);
});

Deno.test("extractDeclaration cuts one class member, dedented, with its doc comment", () => {
  assertEquals(
    extractDeclaration(SOURCE, "Greeter.greet"),
    [
      "/**",
      " * Greets, with a { in the doc.",
      " */",
      "greet(who: { first: string } = { first: '' }): string {",
      "  const re = /[{]+\\/}/g;",
      "  return `hi ${who.first.replace(re, `}${'{'}`)} }`;",
      "}",
    ].join("\n"),
  );
  assertEquals(
    extractDeclaration(SOURCE, "Greeter.constructor"),
    "constructor() {\n  super();\n}",
  );
  assertEquals(extractDeclaration(SOURCE, "Greeter.name"), "// a } in a comment\nname = '}';");
});

Deno.test("extractDeclaration leaves the members named in omit out of a class, with a note", () => {
  const lines = SOURCE.split("\n");
  const omit = ["Greeter.greet", "Greeter.wave", "pair.x", "Other.greet"];
  assertEquals(
    extractDeclaration(SOURCE, "Greeter", "x.ts", omit),
    [...lines.slice(2, 6), "  // greet: left out here", ...lines.slice(13, 18)].join("\n"),
  );
  assertEquals(
    extractDeclaration(SOURCE, "pair", "x.ts", omit),
    extractDeclaration(SOURCE, "pair"),
  );
});

Deno.test("extractDeclaration names what it could not find", () => {
  assertThrows(
    () => extractDeclaration(SOURCE, "Missing", "x.ts"),
    'Cannot find "Missing" in x.ts: expected a top-level class',
  );
  assertThrows(
    () => extractDeclaration(SOURCE, "Greeter.wave", "x.ts"),
    'class Greeter has no member "wave"',
  );
  assertThrows(
    () => extractDeclaration(SOURCE, "pair.x", "x.ts"),
    "expected a top-level class pair",
  );
  // a name that only appears inside a comment or a string is not a declaration
  assertThrows(() =>
    extractDeclaration("// class Hidden {}\nconst s = 'class Hidden {}';", "Hidden")
  );
});

Deno.test("SourceListing is a Markdown code block with a fence longer than the code's backticks", () => {
  const listing = new SourceListing("const s = `a` + ````;", "lib/x.ts");
  const bundle = (listing as unknown as Record<symbol, () => Record<string, string>>)[
    Symbol.for("Jupyter.display")
  ]();
  assertEquals(bundle["text/markdown"], "`lib/x.ts`:\n\n`````ts\nconst s = `a` + ````;\n`````");
  assertEquals(bundle["text/plain"], "// lib/x.ts\nconst s = `a` + ````;");
});

Deno.test("showSource reads the real GPT-2 module's classes and members", async () => {
  const path = new URL("../../lib/model/gpt.ts", import.meta.url);
  const listing = await showSource(path, ["CausalSelfAttention", "GPT.forward"], {
    label: "lib/model/gpt.ts",
  });
  assertEquals(listing.label, "lib/model/gpt.ts");
  const code = listing.code;
  assert(code.startsWith("/** Multi-head causal self-attention"), code.slice(0, 80));
  assert(
    code.includes("export class CausalSelfAttention extends Module {"),
    "export class CausalSelfAttention extends Module {",
  );
  assert(
    code.includes("\n}\n\n/** Logits for every position"),
    "\n}\n\n/** Logits for every position",
  );
  assert(
    code.includes(
      "\nforward(idx: Tensor, targets: Tensor | null = null, options: ForwardOptions = {}): GPTOutput {",
    ),
    "\nforward(idx: Tensor, targets: Tensor | null = null, options: ForwardOptions = {}): GPTOutput {",
  );
  assert(code.endsWith("}, ({ logits, loss }) => [logits, loss]);\n}"), code.slice(-80));
  assert(!code.includes("class MLP"), "the listing runs past CausalSelfAttention");
});
