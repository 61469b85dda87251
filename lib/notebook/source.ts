/**
 * Shows the project's own source in a notebook: {@linkcode showSource} reads a TypeScript
 * file, cuts out the named declarations (a class, a function, an interface, a type, a
 * variable, or one member of a class as `"GPT.forward"`) and returns them as a Jupyter display
 * object, a Markdown code block with the code as plain text beside it. So notebook 01 shows
 * the real `CausalSelfAttention` of `lib/model/gpt.ts`, not a copy that can drift from it.
 *
 * Why no TypeScript compiler: the project does not depend on one, and a declaration's extent
 * in formatted code needs only brackets matched outside comments, strings, template literals
 * and regular expressions, which {@linkcode maskNonCode} blanks out first.
 *
 * @example
 * ```ts
 * import { showSource } from "../lib/notebook/source.ts";
 * await showSource("../lib/model/gpt.ts", ["MLP", "GPT.forward"]); // the cell's result
 * ```
 *
 * @module
 */

/** What Deno's Jupyter kernel calls to display an object (`Deno.jupyter.$display`). */
const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** The MIME bundle of a listing: Markdown for the notebook, plain text for everything else. */
export interface SourceBundle {
  "text/markdown": string;
  "text/plain": string;
}

/** Source code shown in a notebook, labelled with the file it comes from. */
export class SourceListing {
  /** The code, as cut out of the file. */
  readonly code: string;
  /** The file it was read from, as shown above the code. */
  readonly label: string;
  /** The code block's language (for highlighting). */
  readonly language: string;

  constructor(code: string, label: string, language = "ts") {
    this.code = code;
    this.label = label;
    this.language = language;
  }

  /** The label and a fenced code block (the fence longer than any backtick run in the code). */
  markdown(): string {
    const longest = Math.max(0, ...(this.code.match(/`+/g) ?? []).map((run) => run.length));
    const fence = "`".repeat(Math.max(3, longest + 1));
    return `\`${this.label}\`:\n\n${fence}${this.language}\n${this.code}\n${fence}`;
  }

  /** The label on its own line, then the code. */
  toString(): string {
    return `// ${this.label}\n${this.code}`;
  }

  /** The bundle Deno's kernel displays when a cell ends with this object. */
  [JUPYTER_DISPLAY](): SourceBundle {
    return { "text/markdown": this.markdown(), "text/plain": this.toString() };
  }
}

/** Options of {@linkcode showSource}. */
export interface ShowSourceOptions {
  /** What the listing says it comes from; default the path without leading `../` and `./`. */
  label?: string;
  /**
   * Members to leave out of the classes shown (`"Block.forwardDecode"`), each replaced by a
   * one-line note; members a class lacks are skipped, so a listing outlives their removal.
   */
  omit?: readonly string[];
}

/**
 * Reads `path` and returns the declarations `names` (in that order, a blank line between
 * them) as a listing for a notebook cell to display. A name is top-level (`"MLP"`) or a
 * member of a top-level class (`"GPT.forward"`, `"GPT.constructor"`).
 *
 * @throws {Error} when the file cannot be read or a name is not declared in it
 */
export async function showSource(
  path: string | URL,
  names: string | readonly string[],
  options: ShowSourceOptions = {},
): Promise<SourceListing> {
  const source = await Deno.readTextFile(path);
  const label = options.label ?? String(path).replace(/^(\.\.?\/)+/, "");
  const parts = (typeof names === "string" ? [names] : names).map((name) =>
    extractDeclaration(source, name, label, options.omit)
  );
  return new SourceListing(parts.join("\n\n"), label);
}

/**
 * The text of one declaration in `source`, with the comment lines right above it (its JSDoc)
 * and, for a class member, without the class's indentation. `name` is a top-level name or
 * `Class.member`; `file` names the source in errors. `omit` lists members (`Class.member`) to
 * leave out of a class, each replaced by a one-line note; those the class lacks are skipped.
 *
 * @throws {Error} when `name` is not declared in `source`
 */
export function extractDeclaration(
  source: string,
  name: string,
  file = "the source",
  omit: readonly string[] = [],
): string {
  const masked = maskNonCode(source);
  const dot = name.indexOf(".");
  if (dot < 0) {
    const found = findTopLevel(masked, name);
    if (!found) {
      throw new Error(
        `Cannot find "${name}" in ${file}: expected a top-level class, function, interface, ` +
          `type, enum or variable of that name`,
      );
    }
    const text = withMembersLeftOut(source, masked, found, name, omit);
    return cut(text, maskNonCode(text), found.start, found.end - (source.length - text.length));
  }
  const className = name.slice(0, dot), member = name.slice(dot + 1);
  const owner = findTopLevel(masked, className);
  if (!owner || owner.kind !== "class") {
    throw new Error(`Cannot find "${name}" in ${file}: expected a top-level class ${className}`);
  }
  const found = findMember(masked, owner, member);
  if (!found) {
    throw new Error(
      `Cannot find "${name}" in ${file}: class ${className} has no member "${member}"`,
    );
  }
  return dedent(cut(source, masked, found.start, found.end));
}

/**
 * `source` with the members of class `owner` named in `omit` (as `Class.member`, with their
 * comments) replaced by a note each, at their indentation.
 */
function withMembersLeftOut(
  source: string,
  masked: string,
  owner: Span,
  className: string,
  omit: readonly string[],
): string {
  if (owner.kind !== "class") return source;
  const spans = omit
    .filter((o) => o.startsWith(`${className}.`))
    .map((o) => o.slice(className.length + 1))
    .map((member) => ({ member, span: findMember(masked, owner, member) }))
    .flatMap(({ member, span }) => span ? [{ member, ...span }] : [])
    .sort((a, b) => b.start - a.start); // last first, so earlier offsets stay valid
  let text = source;
  for (const { member, start, end } of spans) {
    const from = commentStart(source, masked, start);
    const indent = source.slice(from).match(/^[ \t]*/)![0];
    text = `${text.slice(0, from)}${indent}// ${member}: left out here${text.slice(end)}`;
  }
  return text;
}

/** Where a declaration lies in the source: [start, end) and its keyword. */
interface Span {
  start: number;
  end: number;
  kind: string;
}

const IDENTIFIER = /[A-Za-z0-9_$]/;
/** Words after which a `/` starts a regular expression, not a division. */
const BEFORE_REGEX = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);
/** Characters after which a `/` starts a regular expression. */
const PUNCTUATION_BEFORE_REGEX = "(,=:[!&|?{};+-*%<>~^";

/**
 * `source` with the insides of comments, string and template literals and regular expressions
 * replaced by spaces (newlines kept, so offsets and lines stay): what is left is code, where
 * brackets and keywords mean what they say. The code inside a template's `${...}` is kept,
 * with its braces.
 */
export function maskNonCode(source: string): string {
  const out = source.split("");
  const blank = (from: number, to: number): void => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  // for each template literal we are inside of, the brace depth of its current `${` expression
  const templates: number[] = [];
  let inTemplateText = false;
  let previous = ""; // the last code token's last character, or a word
  let i = 0;
  const n = source.length;
  while (i < n) {
    if (inTemplateText) {
      const start = i;
      while (i < n && source[i] !== "`" && !(source[i] === "$" && source[i + 1] === "{")) {
        i += source[i] === "\\" ? 2 : 1;
      }
      if (source[i] === "`") {
        blank(start, i + 1);
        i++;
        inTemplateText = false;
        previous = "`";
      } else {
        blank(start, i + 1); // the `{` of `${` stays, as does its `}`: they pair in the code
        i += 2;
        templates.push(0);
        inTemplateText = false;
        previous = "{";
      }
      continue;
    }
    const c = source[i];
    if (c === "/" && source[i + 1] === "/") {
      const end = source.indexOf("\n", i);
      const stop = end < 0 ? n : end;
      blank(i, stop);
      i = stop;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < n && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      blank(i, j + 1);
      i = j + 1;
      previous = c;
    } else if (c === "`") {
      blank(i, i + 1);
      i++;
      inTemplateText = true;
    } else if (c === "/" && regexMayStart(previous)) {
      const end = regexEnd(source, i);
      if (end < 0) {
        previous = "/"; // a division after all: no closing slash on this line
        i++;
      } else {
        blank(i, end);
        i = end;
        previous = "/re";
      }
    } else if (IDENTIFIER.test(c)) {
      let j = i + 1;
      while (j < n && IDENTIFIER.test(source[j])) j++;
      previous = source.slice(i, j);
      i = j;
    } else {
      if (templates.length > 0 && c === "{") templates[templates.length - 1]++;
      if (templates.length > 0 && c === "}") {
        if (templates[templates.length - 1] === 0) {
          templates.pop();
          i++;
          inTemplateText = true;
          continue;
        }
        templates[templates.length - 1]--;
      }
      if (!/\s/.test(c)) previous = c;
      i++;
    }
  }
  return out.join("");
}

/** Whether a `/` after the token `previous` starts a regular expression. */
function regexMayStart(previous: string): boolean {
  if (previous === "") return true;
  if (previous.length === 1 && PUNCTUATION_BEFORE_REGEX.includes(previous)) return true;
  return BEFORE_REGEX.has(previous);
}

/** The offset after a regular expression starting at `start` (flags included), or -1. */
function regexEnd(source: string, start: number): number {
  let inClass = false;
  for (let j = start + 1; j < source.length; j++) {
    const c = source[j];
    if (c === "\n") return -1;
    if (c === "\\") j++;
    else if (c === "[") inClass = true;
    else if (c === "]") inClass = false;
    else if (c === "/" && !inClass) {
      let k = j + 1;
      while (k < source.length && /[a-z]/.test(source[k])) k++;
      return k;
    }
  }
  return -1;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The brace depth at `offset` of masked code. */
function depthAt(masked: string, offset: number): number {
  let depth = 0;
  for (let i = 0; i < offset; i++) {
    if (masked[i] === "{") depth++;
    else if (masked[i] === "}") depth--;
  }
  return depth;
}

/** A top-level declaration of `name` (at the start of a line, outside every brace). */
function findTopLevel(masked: string, name: string): Span | null {
  const pattern = new RegExp(
    "^(?:export\\s+)?(?:default\\s+)?(?:declare\\s+)?(?:abstract\\s+)?(?:async\\s+)?" +
      `(class|function\\*?|interface|type|enum|const|let|var)\\s+${escapeRegExp(name)}(?![\\w$])`,
    "gm",
  );
  for (const match of masked.matchAll(pattern)) {
    if (depthAt(masked, match.index) !== 0) continue;
    const kind = match[1].replace("*", "");
    const afterName = match.index + match[0].length;
    const end = kind === "function"
      ? functionEnd(masked, afterName)
      : ["class", "interface", "enum"].includes(kind)
      ? bodyEnd(masked, afterName)
      : statementEnd(masked, afterName);
    return { start: match.index, end, kind };
  }
  return null;
}

/** A member of a class (a method, the constructor, an accessor or a property). */
function findMember(masked: string, owner: Span, member: string): Span | null {
  const open = firstBodyBrace(masked, owner.start);
  const memberDepth = depthAt(masked, open) + 1;
  const pattern = new RegExp(
    "^[ \\t]+(?:(?:public|private|protected|static|readonly|override|async|abstract|declare|" +
      `get|set)\\s+)*(?:\\*\\s*)?#?${escapeRegExp(member)}\\s*(?:[?!]\\s*)?([(<:=;])`,
    "gm",
  );
  pattern.lastIndex = open;
  for (let match = pattern.exec(masked); match; match = pattern.exec(masked)) {
    if (match.index >= owner.end) break;
    if (depthAt(masked, match.index) !== memberDepth) continue;
    const afterName = match.index + match[0].length - 1;
    const end = "(<".includes(match[1])
      ? functionEnd(masked, afterName)
      : statementEnd(masked, afterName);
    return { start: match.index, end, kind: "member" };
  }
  return null;
}

/** The offset of a class's or interface's body brace: the first `{` outside (), [] and <>. */
function firstBodyBrace(masked: string, from: number): number {
  let nesting = 0;
  for (let i = from; i < masked.length; i++) {
    const c = masked[i];
    if (c === "(" || c === "[" || c === "<") nesting++;
    else if (c === ")" || c === "]" || (c === ">" && masked[i - 1] !== "=")) nesting--;
    else if (c === "{" && nesting === 0) return i;
  }
  throw new Error("Expected a body in braces, found the end of the file");
}

/** The offset after the `}` that closes the brace at `open`. */
function matchingBrace(masked: string, open: number): number {
  let depth = 0;
  for (let i = open; i < masked.length; i++) {
    if (masked[i] === "{") depth++;
    else if (masked[i] === "}" && --depth === 0) return i + 1;
  }
  throw new Error(`Expected a closing brace for the one at offset ${open}, found the end`);
}

/** The end of a class, interface or enum whose header starts at `from`. */
function bodyEnd(masked: string, from: number): number {
  return matchingBrace(masked, firstBodyBrace(masked, from));
}

/**
 * The end of a function or method whose generics or parameters start at `from`: past the
 * parameter list, the return type, then the body. A `{` opens the body unless it follows
 * something after which a type is still expected (`:`, `|`, `&`, `<`, `,`, `(`, `=>`), so an
 * object-literal return type is skipped. A `;` first means a signature without a body.
 */
function functionEnd(masked: string, from: number): number {
  let i = from;
  let nesting = 0; // (), [] and <> of generics and the parameter list
  let previous = "";
  for (; i < masked.length; i++) {
    const c = masked[i];
    if (/\s/.test(c)) continue;
    if (c === "(" || c === "[" || c === "<") nesting++;
    else if (c === ")" || c === "]" || (c === ">" && previous !== "=")) nesting--;
    else if (c === ";" && nesting === 0) return i + 1;
    else if (c === "{") {
      const arrow = previous === ">" && masked[lastCodeBefore(masked, i) - 1] === "=";
      if (nesting === 0 && !":|&<,(=".includes(previous) && !arrow) return matchingBrace(masked, i);
      i = matchingBrace(masked, i) - 1; // an object type or a default value: skip it whole
      previous = "}";
      continue;
    }
    previous = c;
  }
  return masked.length;
}

/** The offset of the last non-space character before `offset`. */
function lastCodeBefore(masked: string, offset: number): number {
  let j = offset - 1;
  while (j >= 0 && /\s/.test(masked[j])) j--;
  return j;
}

/**
 * The end of a statement (a type, a variable, a property) starting at `from`: after the
 * first `;` outside brackets (formatted code ends every statement with one).
 */
function statementEnd(masked: string, from: number): number {
  let nesting = 0;
  for (let i = from; i < masked.length; i++) {
    const c = masked[i];
    if ("([{".includes(c)) nesting++;
    else if (")]}".includes(c)) nesting--;
    else if (c === ";" && nesting === 0) return i + 1;
  }
  return masked.length;
}

/** The start of the comment lines right above the line of `start`, or of that line. */
function commentStart(source: string, masked: string, start: number): number {
  let from = source.lastIndexOf("\n", start - 1) + 1;
  // walk up over lines that are comment only: code-free in the masked text, not empty
  while (from > 0) {
    const previousStart = source.lastIndexOf("\n", from - 2) + 1;
    const line = source.slice(previousStart, from - 1);
    if (line.trim() === "" || masked.slice(previousStart, from - 1).trim() !== "") break;
    from = previousStart;
  }
  return from;
}

/** The source from the comment lines right above `start` (if any) to `end`. */
function cut(source: string, masked: string, start: number, end: number): string {
  return source.slice(commentStart(source, masked, start), end).trimEnd();
}

/** Removes the indentation the lines share (blank lines do not count). */
function dedent(text: string): string {
  const lines = text.split("\n");
  const indents = lines.filter((l) => l.trim() !== "").map((l) => l.match(/^[ \t]*/)![0].length);
  const common = Math.min(...indents);
  return lines.map((l) => l.slice(Math.min(common, l.match(/^[ \t]*/)![0].length))).join("\n");
}
