"""A multiprocessing pool-like pattern that never leaves zombies, built on undertaker.

Three habits make it zombie-free:

1. every worker is joined on the way out (polite sentinel, then SIGTERM,
   then SIGKILL), even when the block is left by an exception;
2. workers ask the kernel to kill them if the pool's process dies
   (``set_parent_death_signal``), so they are never orphaned running;
3. a ``Reaper`` makes the pool process a subreaper and reaps the orphans
   that tasks leave behind (a task that starts ``sleep`` and returns), while
   ``multiprocessing`` keeps its own workers' statuses.

    python examples/worker_pool.py --workers 4 --tasks 40

prints the results, how many orphans were reaped, and the zombies left (0).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from undertaker import Reaper, set_parent_death_signal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from multiprocessing.context import SpawnProcess
    from types import TracebackType

_STOP = None


def _worker(tasks: multiprocessing.Queue[Any], results: multiprocessing.Queue[Any]) -> None:
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() == 1:  # the pool died before the line above took effect
        return
    while (task := tasks.get()) is not _STOP:
        index, function, item = task
        results.put((index, function(item)))


class Pool:
    """N worker processes fed through a queue; always joined, never orphaned."""

    def __init__(self, workers: int = 4, grace: float = 2.0) -> None:
        """Start *workers* processes (spawn start method: safe with our threads)."""
        context = multiprocessing.get_context("spawn")
        self.grace = grace
        self._closed = False
        self._tasks: multiprocessing.Queue[Any] = context.Queue()
        self._results: multiprocessing.Queue[Any] = context.Queue()
        self._workers: list[SpawnProcess] = [
            context.Process(target=_worker, args=(self._tasks, self._results))
            for _ in range(workers)
        ]
        for process in self._workers:
            process.start()

    def map(
        self, function: Callable[[Any], Any], items: Iterable[Any], timeout: float = 60
    ) -> list[Any]:
        """Run *function* on every item in the workers; results in input order."""
        todo = list(items)
        for index, item in enumerate(todo):
            self._tasks.put((index, function, item))
        results: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(todo):
            try:
                index, value = self._results.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise TimeoutError(f"{len(todo) - len(results)} tasks unfinished") from None
            results[index] = value
        return [results[index] for index in range(len(todo))]

    def close(self) -> list[int | None]:
        """Stop every worker and join it: sentinel, then SIGTERM, then SIGKILL. Idempotent."""
        if self._closed:
            return [process.exitcode for process in self._workers]
        self._closed = True
        for _ in self._workers:
            self._tasks.put(_STOP)
        for process in self._workers:
            process.join(self.grace)
        for process in self._workers:
            if process.is_alive():
                process.terminate()
                process.join(self.grace)
            if process.is_alive():
                process.kill()
                process.join()
        self._tasks.close()
        self._results.close()
        return [process.exitcode for process in self._workers]

    def __enter__(self) -> Pool:  # noqa: PYI034  (Self needs 3.11)
        """Use as ``with Pool() as pool:``."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Join every worker, whatever happened in the block."""
        self.close()


def square_and_litter(n: int) -> int:
    """A task that leaves a background process behind every fifth call."""
    if n % 5 == 0:
        subprocess.Popen(["sleep", "0.05"])
    return n * n


def zombie_children() -> int:
    """Our children that are zombies now."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as listing:
                pids = listing.read().split()
        except FileNotFoundError:
            continue  # the thread ended
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    data = stat.read()
            except FileNotFoundError:
                continue  # reaped since the listing
            count += data[data.rfind(b")") + 2 :][:1] == b"Z"
    return count


def main(argv: list[str] | None = None) -> int:
    """Run the tasks, then report results, orphans reaped and zombies left."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args(argv)
    with Reaper(grace=0.2) as reaper:
        with Pool(args.workers) as pool:
            results = pool.map(square_and_litter, range(args.tasks))
        exit_codes = pool.close()
        expected = len(range(0, args.tasks, 5))
        deadline = time.monotonic() + 20
        while sum(r.orphan for r in reaper.history) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = sum(r.orphan for r in reaper.history)
    report = {
        "results_ok": results == [n * n for n in range(args.tasks)],
        "worker_exit_codes": exit_codes,
        "orphans_reaped": orphans,
        "orphans_expected": expected,
        "zombies_left": zombie_children(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
