// Files and folders replaced whole (lib/io/atomic.ts): a failed write leaves the old version
// and no temporary behind; a replaced folder holds only the new files.
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { join } from "node:path";
import { replaceFolderAtomic, writeFileAtomic } from "../../lib/io/atomic.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("atomic: a file is replaced whole, leaving no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "log.txt");
  await Deno.writeTextFile(path, "0 train 1.0\n1 train 0.9\n");
  await writeFileAtomic(path, "0 train 1.0\n");
  assertEquals(await Deno.readTextFile(path), "0 train 1.0\n");
  assertEquals(await names(dir), ["log.txt"]);
});

Deno.test("atomic: a failed file write leaves the old file and no temporary", async () => {
  const dir = await Deno.makeTempDir();
  // a folder where the file would go: the rename fails after the temporary is written
  await Deno.mkdir(join(dir, "run.json"));
  await Deno.writeTextFile(join(dir, "run.json", "keep"), "x");
  await rejects(writeFileAtomic(join(dir, "run.json"), "{}\n"));
  assertEquals(await names(dir), ["run.json"]);
  assertEquals(await Deno.readTextFile(join(dir, "run.json", "keep")), "x");
});

Deno.test("atomic: a folder is replaced whole; a failed fill leaves the old folder", async () => {
  const dir = await Deno.makeTempDir();
  const model = join(dir, "model");
  await Deno.mkdir(model);
  await Deno.writeTextFile(join(model, "model.safetensors"), "old weights");
  await Deno.writeTextFile(join(model, "stale.bin"), "old");
  await rejects(
    replaceFolderAtomic(model, async (tmp) => {
      await Deno.writeTextFile(join(tmp, "model.safetensors"), "half");
      throw new Error("No space left on device");
    }),
    { message: "No space left on device" },
  );
  assertEquals(await names(dir), ["model"]);
  assertEquals(await Deno.readTextFile(join(model, "model.safetensors")), "old weights");
  await replaceFolderAtomic(model, async (tmp) => {
    await Deno.writeTextFile(join(tmp, "model.safetensors"), "new weights");
  });
  assertEquals(await names(dir), ["model"]);
  assertEquals(await names(model), ["model.safetensors"]);
  assertEquals(await Deno.readTextFile(join(model, "model.safetensors")), "new weights");
});
