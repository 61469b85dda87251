#!/usr/bin/python3
"""Execute a Jupyter notebook headless with the Deno kernel, without losing outputs.

Usage (run with Debian's /usr/bin/python3, which has nbclient):

    /usr/bin/python3 tests/tools/run_notebook.py NOTEBOOK [--out PATH | --inplace]
        [--timeout SECONDS] [--grace SECONDS] [--max-grace SECONDS] [--kernel NAME]

The kernel runs with its working directory set to the notebook's folder, so
relative imports such as `../lib/model/gpt.ts` resolve as they do in Jupyter.
Progress goes to stderr, one line per code cell.

Why not `jupyter nbconvert --execute`
-------------------------------------
Deno 2.9.6's kernel publishes a cell's `status: idle` before all of the cell's
output has left: console output goes through a queue and a separate sending task,
and a cell's `execute_result` can also trail the `idle`. Each such message is
labelled with the request the kernel is serving *when it is sent*. nbclient
stops collecting a cell's output at `idle` and ignores messages labelled with
other requests, so stock nbconvert silently drops 1-3 outputs per run (exit
code 0); and once the next cell has been sent, the previous cell's trailing
output is labelled as the next cell's (measured: 20,000 printed lines were
still arriving 5 s after `idle`).

What this runner does (a subclass of nbclient's NotebookClient)
  1. After a cell's `idle`, it sends a silent "flush" request that prints a
     unique marker line with console.log and console.error, and keeps reading
     iopub until both markers and the flush request's own `idle` have arrived.
     The kernel forwards console output in order, so everything the cell
     printed arrives before its marker.
     Whatever arrives labelled with the flush request belongs to the cell
     (the markers themselves are removed). Only then is the next cell sent.
  2. Then it reads on until iopub has been quiet for `--grace` seconds, for
     any straggling rich output.
  3. It remembers which cell each request belongs to (by msg_id), so a
     message that still comes late is attached to its own cell, not dropped.
  4. After the last cell (or a failing one) it drains iopub once more.
If a flush marker has not come back after `--max-grace` seconds it says so
and goes on with the next cell.

Exit status: 0 when every cell ran, 1 when a cell raised, timed out or the
kernel died (the message names the cell), 2 on bad usage. The executed
notebook is written to `--out` (default: a file in the system temp folder;
never the source unless `--inplace`), also when a cell failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
import typing as t
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO_ROOT / "notebooks" / "jupyter"

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellControlSignal,
        CellExecutionComplete,
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )
    from nbclient.util import ensure_async
    from nbformat import NotebookNode
except ImportError as exc:  # depends on the machine
    print(
        f"run_notebook: cannot import nbclient/nbformat ({exc}); run `deno task setup` "
        "and use /usr/bin/python3",
        file=sys.stderr,
    )
    sys.exit(2)

OUTPUT_TYPES = {"stream", "execute_result", "display_data", "error"}
# What a cell may still send after its `idle` (kept when labelled with a flush).
TRAILING_TYPES = OUTPUT_TYPES | {"clear_output", "update_display_data"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log(text: str) -> None:
    print(f"[run_notebook] {text}", file=sys.stderr, flush=True)


def coalesce_streams(nb: NotebookNode) -> None:
    """Merge consecutive stream outputs of the same name (Deno sends one per write)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged: list[NotebookNode] = []
        for out in cell.outputs:
            prev = merged[-1] if merged else None
            if (
                prev is not None
                and out.output_type == "stream"
                and prev.output_type == "stream"
                and prev.name == out.name
            ):
                prev.text += out.text
            else:
                merged.append(out)
        cell.outputs = merged


@dataclass
class Flush:
    """A silent request sent after a cell to push the cell's trailing output out."""

    marker: str
    pending_streams: set[str] = field(default_factory=lambda: {"stdout", "stderr"})
    idle: bool = False

    @property
    def done(self) -> bool:
        return self.idle and not self.pending_streams


@dataclass
class LateStats:
    """Outputs of one cell that arrived after the cell's `idle`."""

    count: int = 0  # late output messages
    relabelled: int = 0  # of which came labelled with the flush request
    latest: float = 0.0  # seconds between `idle` and the last late output


class FlushingNotebookClient(NotebookClient):
    """NotebookClient that collects a cell's trailing output before the next cell."""

    def __init__(self, nb: NotebookNode, grace: float, max_grace: float, **kw: t.Any) -> None:
        super().__init__(nb, **kw)
        self.grace = grace
        self.max_grace = max_grace
        # msg_id of each execute request (cells and flushes) -> (cell, cell index)
        self.owners: dict[str, tuple[NotebookNode, int]] = {}
        self.flushes: dict[str, Flush] = {}
        # msg_id of a cell's request -> time its `idle` was seen
        self.idle_seen: dict[str, float] = {}
        self.late_outputs: dict[int, LateStats] = {}
        self.current_msg_id: str | None = None

    def _note_late(self, index: int, since: float | None, relabelled: bool) -> None:
        stats = self.late_outputs.setdefault(index, LateStats())
        stats.count += 1
        stats.relabelled += 1 if relabelled else 0
        if since is not None:
            stats.latest = max(stats.latest, time.monotonic() - since)

    def route(self, msg: dict[str, t.Any]) -> bool:
        """Attach one iopub message to the cell it belongs to.

        Returns True when the message is the `idle` of the cell now running.
        """
        msg_id = msg["parent_header"].get("msg_id")
        owner = self.owners.get(msg_id)
        if owner is None:
            return False
        cell, index = owner
        msg_type = msg["msg_type"]
        flush = self.flushes.get(msg_id)
        if flush is not None:
            # The flush request's own bookkeeping must not touch the cell.
            if msg_type == "status":
                flush.idle = flush.idle or msg["content"]["execution_state"] == "idle"
                return False
            if msg_type not in TRAILING_TYPES:
                return False
            if msg_type == "stream" and flush.marker in msg["content"]["text"]:
                flush.pending_streams.discard(msg["content"]["name"])
                text = msg["content"]["text"].replace(flush.marker + "\n", "")
                text = text.replace(flush.marker, "")
                if not text:
                    return False
                msg = {**msg, "content": {**msg["content"], "text": text}}
            self._note_late(index, None, relabelled=True)
        elif msg_id in self.idle_seen and msg_type in OUTPUT_TYPES:
            self._note_late(index, self.idle_seen[msg_id], relabelled=False)

        current = self.owners.get(self.current_msg_id or "")
        is_current = current is not None and current[1] == index
        # `clear_before_next_output` is state of the running cell: keep it out
        # of an earlier cell's late message.
        saved_clear = self.clear_before_next_output
        if not is_current:
            self.clear_before_next_output = False
        try:
            self.process_message(msg, cell, index)
        except CellExecutionComplete:
            self.idle_seen.setdefault(msg_id, time.monotonic())
            return msg_id == self.current_msg_id
        finally:
            if not is_current:
                self.clear_before_next_output = saved_clear
        return False

    async def read_until(
        self, done: t.Callable[[], bool], cap: float, quiet: float | None = None
    ) -> bool:
        """Route iopub messages until `done()`, `cap` s, or `quiet` s of silence.

        Returns True when `done()` became true.
        """
        assert self.kc is not None
        deadline = time.monotonic() + cap
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = left if quiet is None else min(quiet, left)
            try:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=wait))
            except Empty:
                if quiet is not None:
                    return False
                continue
            self.route(msg)
        return True

    async def flush(self, cell_index: int) -> None:
        """Send a silent marker request and wait until its markers are back."""
        assert self.kc is not None
        marker = f"__run_notebook_flush_{uuid.uuid4().hex}__"
        # console.* is what the kernel captures (Deno.stdout.write is not).
        code = f'console.log("{marker}");\nconsole.error("{marker}");\n'
        msg_id = await ensure_async(self.kc.execute(code, silent=True, store_history=False))
        flush = Flush(marker=marker)
        self.flushes[msg_id] = flush
        self.owners[msg_id] = self.owners[t.cast(str, self.current_msg_id)]
        start = time.monotonic()
        got = await self.read_until(lambda: flush.done, self.max_grace)
        if not got:
            log(
                f"cell {cell_index + 1}: flush marker not back after "
                f"{time.monotonic() - start:.1f} s; going on"
            )

    async def _async_poll_output_msg(
        self, parent_msg_id: str, cell: NotebookNode, cell_index: int
    ) -> None:
        # Replaces nbclient's loop, which returns at `idle` and drops messages
        # labelled with other requests.
        assert self.kc is not None
        self.owners[parent_msg_id] = (cell, cell_index)
        self.current_msg_id = parent_msg_id
        while True:
            msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
            if self.route(msg):
                break
        await self.flush(cell_index)
        await self.read_until(lambda: False, self.max_grace, quiet=self.grace)

    async def run(self) -> tuple[int | None, str | None]:
        """Execute every cell; return (failing cell index, reason) or (None, None)."""
        self.reset_execution_trackers()
        cells = self.nb.cells
        n = len(cells)
        failed: tuple[int | None, str | None] = (None, None)
        async with self.async_setup_kernel():
            assert self.kc is not None
            msg_id = await ensure_async(self.kc.kernel_info())
            info_msg = await self.async_wait_for_reply(msg_id)
            if info_msg is not None and "language_info" in info_msg["content"]:
                self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
            for index, cell in enumerate(cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                start = time.monotonic()
                try:
                    await self.async_execute_cell(
                        cell, index, execution_count=self.code_cells_executed + 1
                    )
                except CellExecutionError as exc:
                    failed = (index, f"{exc.ename}: {exc.evalue}")
                except CellTimeoutError:
                    failed = (index, f"timed out after {self.timeout} s")
                except DeadKernelError:
                    failed = (index, "the kernel died")
                except CellControlSignal as exc:
                    failed = (index, f"{type(exc).__name__}: {exc}")
                took = time.monotonic() - start
                status = "FAILED" if failed[0] == index else "ok"
                log(f"cell {index + 1}/{n} {status} {took:.2f} s")
                if failed[0] is not None:
                    break
            try:
                await self.read_until(lambda: False, self.max_grace, quiet=max(self.grace, 0.2))
            except Exception as exc:  # kernel gone after a failure: keep the report
                log(f"could not drain the kernel's output after the last cell: {exc}")
        return failed


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Execute a notebook with the Deno kernel, keeping late outputs."
    )
    p.add_argument("notebook", type=Path)
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        help="where to write the executed notebook (default: <temp dir>/<name>.executed.ipynb)",
    )
    where.add_argument(
        "--inplace", action="store_true", help="overwrite the source notebook with its outputs"
    )
    p.add_argument(
        "--timeout", type=float, default=600, help="per-cell timeout in seconds (default 600)"
    )
    p.add_argument(
        "--grace",
        type=float,
        default=0.05,
        help="after a cell's flush, read on until output has been quiet this long "
        "(seconds, default 0.05)",
    )
    p.add_argument(
        "--max-grace",
        type=float,
        default=30.0,
        help="longest wait for a cell's trailing output (seconds, default 30)",
    )
    p.add_argument("--kernel", default="deno", help="kernel name (default: deno)")
    p.add_argument(
        "--startup-timeout", type=int, default=120, help="kernel start timeout in seconds"
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    src: Path = args.notebook.resolve()
    if not src.is_file():
        log(f"Notebook not found: {src}")
        return 2
    if args.inplace:
        out = src
    elif args.out is not None:
        out = args.out.resolve()
    else:
        out = Path(tempfile.gettempdir()) / f"{src.stem}.executed.ipynb"
    if out == src and not args.inplace:
        log("Refusing to overwrite the source notebook without --inplace")
        return 2

    # Find the repo's kernel spec without the caller having to set JUPYTER_PATH.
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if str(KERNEL_DIR) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(KERNEL_DIR), *paths])

    nb = nbformat.read(src, as_version=4)
    spec = nb.metadata.get("kernelspec", {}).get("name")
    if spec is not None and spec != args.kernel:
        log(f"Note: notebook metadata names kernel {spec!r}; running with {args.kernel!r}")

    client = FlushingNotebookClient(
        nb,
        grace=args.grace,
        max_grace=args.max_grace,
        kernel_name=args.kernel,
        timeout=int(args.timeout) if args.timeout > 0 else None,
        startup_timeout=args.startup_timeout,
        # nbclient stops waiting for a cell's output this long after its reply.
        iopub_timeout=int(2 * args.max_grace) + 10,
        resources={"metadata": {"path": str(src.parent)}},
    )
    n_code = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
    log(
        f"{src.name}: {len(nb.cells)} cells ({n_code} code), kernel {args.kernel}, "
        f"cwd {src.parent}"
    )
    start = time.monotonic()
    failed_index, reason = asyncio.run(client.run())
    took = time.monotonic() - start

    for index, st in sorted(client.late_outputs.items()):
        log(
            f"cell {index + 1}: kept {st.count} output(s) that came after idle "
            f"({st.relabelled} labelled with the flush request; "
            f"others up to {st.latest * 1000:.1f} ms after idle)"
        )
    coalesce_streams(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    log(f"wrote {out} ({took:.1f} s)")
    if failed_index is not None:
        first = nb.cells[failed_index].source.strip().splitlines()[0][:80]
        for output in nb.cells[failed_index].outputs:
            if output.output_type == "error":
                print(ANSI.sub("", "\n".join(output.traceback)), file=sys.stderr)
        log(f"Cell {failed_index + 1}/{len(nb.cells)} of {src.name} failed: {reason}")
        log(f"  first line: {first}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
