// A rank program for tests/ddp/ddp_test.ts (the launcher's --script): deno task train, except
// that rank 1 reads the shard folder GPT2_TEST_RANK1_DATA names instead of --data's, one whose
// later shard holds a bad token, so that rank 1 fails with an error in the middle of the run
// while rank 0 waits for it in a collective.

if (Deno.env.get("RANK") === "1") {
  const args = [...Deno.args];
  const at = args.indexOf("--data");
  const data = Deno.env.get("GPT2_TEST_RANK1_DATA");
  if (at < 0 || data === undefined) {
    throw new Error("Expected --data DIR and GPT2_TEST_RANK1_DATA for rank 1");
  }
  args[at + 1] = data;
  Object.defineProperty(Deno, "args", { value: args, configurable: true });
}
await import("../../lib/cli/train.ts");
