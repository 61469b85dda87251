// docs/commands.md stays true to the commands: every flag a task's --help lists is in that
// task's section of the manual, and every environment variable the code reads is in the
// manual's table of them.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MANUAL = Deno.readTextFileSync(join(ROOT, "docs", "commands.md"));

/** The manual's section for `## \`deno task NAME\``, up to the next `## ` heading. */
function section(task: string): string {
  const heading = new RegExp(`^## \`deno task ${task}[\` ]`, "m");
  const found = heading.exec(MANUAL);
  if (!found) throw new Error(`Expected a section "## \`deno task ${task}\`" in docs/commands.md`);
  const next = MANUAL.indexOf("\n## ", found.index + 1);
  return MANUAL.slice(found.index, next < 0 ? undefined : next);
}

/** The long flags a --help text names at the start of its lines. */
function helpFlags(help: string): string[] {
  const flags = new Set<string>();
  for (const line of help.split("\n")) {
    const m = line.match(/^\s+(?:-\w, )?(--[a-z0-9-]+)/);
    if (m) flags.add(m[1]);
    for (const more of line.matchAll(/^\s+--[a-z0-9-]+ \w+, (--[a-z0-9-]+)/g)) flags.add(more[1]);
  }
  return [...flags].sort();
}

const TASKS: [string, string][] = [
  ["train", "lib/cli/train.ts"],
  ["sample", "lib/cli/sample.ts"],
  ["bench", "lib/cli/bench.ts"],
  ["fineweb", "lib/cli/fineweb.ts"],
  ["hellaswag", "lib/cli/hellaswag.ts"],
  ["plot", "lib/cli/plot.ts"],
  ["ddp", "lib/cli/ddp.ts"],
  ["serve", "lib/cli/serve.ts"],
];

for (const [task, file] of TASKS) {
  Deno.test(`docs/commands.md: deno task ${task}'s section names every flag of its --help`, async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", join(ROOT, file), "--help"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const help = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const flags = helpFlags(help);
    const text = section(task);
    // --help itself is every task's, said once at the top of the manual
    const missing = flags.filter((f) =>
      f !== "--help" && !new RegExp(`${f}(?![a-z0-9-])`).test(text)
    );
    assertEquals(missing, [], `flags of deno task ${task} --help missing from docs/commands.md`);
  });
}

/** Every environment variable name the code reads with Deno.env.get("..."). */
function envReads(dir: string): string[] {
  const names = new Set<string>();
  const walk = (d: string): void => {
    for (const e of Deno.readDirSync(d)) {
      const path = join(d, e.name);
      if (e.isDirectory) walk(path);
      else if (e.name.endsWith(".ts")) {
        for (const m of Deno.readTextFileSync(path).matchAll(/env\.get\(\s*"([A-Z0-9_]+)"/g)) {
          names.add(m[1]);
        }
      }
    }
  };
  walk(dir);
  return [...names].sort();
}

Deno.test("docs/commands.md: every environment variable lib/ and tools/ read is in its table", () => {
  const start = MANUAL.indexOf("## Environment variables");
  if (start < 0) {
    throw new Error(`Expected a section "## Environment variables" in docs/commands.md`);
  }
  const table = MANUAL.slice(start);
  const read = [...envReads(join(ROOT, "lib")), ...envReads(join(ROOT, "tools"))];
  const missing = [...new Set(read)].filter((name) => !table.includes(`\`${name}\``));
  assertEquals(missing, [], "environment variables read by the code but missing from the table");
});
