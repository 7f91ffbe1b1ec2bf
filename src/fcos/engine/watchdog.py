"""Hang detection for multi-process training: every rank publishes a heartbeat through the rendezvous
store and watches everybody's, so a rank that stops progressing is named and the run stops instead of
waiting forever.

A rank is hung when, for longer than ``timeout`` seconds, either

- its heartbeat stopped: the process is stopped (SIGSTOP), frozen, or gone without the process group
  noticing; or
- it made no progress (an update, a validation, a checkpoint: every hook event) while not waiting in a
  collective: alive but stuck (a data loader that never returns, a disk that does not answer, a deadlock).

A rank waiting in a collective for a stuck peer is not hung: the peer is the one named. Leaving a
collective counts as progress, so the time spent waiting is never charged to the waiter.

The first rank to find a hang publishes its verdict in the store and, before it stops, waits a moment
(bounded) for the others to read it: without torchrun the store lives in rank 0's process and goes with
it. The others report that same verdict. A collective that fails on a waiting rank (the peer that found
the hang has exited and closed its connections) waits a moment for the verdict, so every rank names the
hung rank rather than printing the backend's "connection closed".

Why this and not only the process group's timeout (which stays, as a backstop): a gloo collective that
times out raises on the waiting ranks without saying which rank never came, NCCL's watchdog aborts the
same way, and ``dist.monitored_barrier`` names missing ranks only at a barrier every rank is meant to
reach, and only on rank 0. The heartbeat names the rank wherever it hangs, on any backend. The same
idea as torchelastic's expiration timers and NCCL's heartbeat monitor, kept inside the workers so it
needs no agent-side set-up and works without torchrun.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["Watchdog"]


@dataclass
class _Seen:
    """What an observer last saw of one rank, and when (its own monotonic clock) that changed."""

    record: dict
    beat_at: float  # the heartbeat last changed
    active_at: float  # progress or waiting last changed


class Watchdog:
    """Heartbeat of rank ``rank`` of ``world`` through ``store`` (keys under ``prefix``), and the
    watch over all ranks (itself included) that calls ``on_hang(messages)`` once a rank is hung.

    The training loop calls :meth:`progress` at each step of work and wraps blocks that wait for the
    other ranks in :meth:`waiting`; a background thread (:meth:`start`) calls :meth:`poll` every
    ``interval`` seconds. ``poll`` takes the time, so tests drive it without threads or sleeps.
    """

    def __init__(self, store: dist.Store, rank: int, world: int, timeout: float, *, prefix: str = "fcos/watchdog",
                 interval: float | None = None, on_hang: Callable[[list[str]], None] | None = None) -> None:
        self.store, self.rank, self.world, self.timeout = store, rank, world, timeout
        self.prefix = prefix
        self.interval = interval if interval is not None else min(30.0, max(0.05, timeout / 10))
        self.grace = 3 * self.interval + 1.0  # how long a failed collective waits for a published verdict
        self.on_hang = on_hang or _exit_with
        self._beat = self._progress = self._waiting = 0
        self._where = "start of training"
        self._done = False
        self._seen: dict[int, _Seen] = {}
        self._started: float | None = None
        self.stuck: list[int] = []  # ranks the last poll (or the verdict it read) found alive but stuck
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the watched (main) thread
    def progress(self, where: str) -> None:
        """This rank did a step of work; ``where`` says which, for the message if it hangs after."""
        self._progress += 1
        self._where = where

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A block that waits for the other ranks (a collective): not a hang of this rank."""
        self._waiting += 1
        try:
            yield
        except Exception as exc:
            # A peer that found a hang exits, and this collective fails with "connection closed": give
            # the watching thread time to read the peer's verdict and stop the run naming the hung rank.
            # Only for the backend's own failures (gloo raises a bare RuntimeError, newer paths DistError):
            # the run's errors (a non-finite loss is a RuntimeError subclass) propagate at once.
            if type(exc) is RuntimeError or isinstance(exc, dist.DistError):
                self._stop.wait(self.grace)
            raise
        finally:
            self._waiting -= 1
            self._progress += 1  # leaving a collective starts the clock anew

    # ------------------------------------------------------------------ the watch
    def poll(self, now: float) -> list[str]:
        """Publish this rank's heartbeat, read every rank's; one message per hung rank (none: all fine)."""
        self._beat += 1
        self._publish()
        if self._started is None:
            self._started = now
        verdict = self._verdict()
        if verdict is not None:  # another rank found the hang first: report the same (and say it was read)
            self.store.set(self._read_key(self.rank), "1")
            self.stuck = list(verdict["stuck"])
            return list(verdict["messages"])
        records = self._read()
        messages = []
        self.stuck = []
        for rank in range(self.world):
            record = records.get(rank)
            if record is None:  # not published yet: ranks reach the loop at slightly different times
                if now - self._started > self.timeout:
                    messages.append(f"rank {rank} never started its heartbeat ({self.timeout:g} s)")
                continue
            seen = self._seen.get(rank)
            if seen is None:
                seen = self._seen[rank] = _Seen(record, now, now)
            if record["beat"] != seen.record["beat"]:
                seen.beat_at = now
            if (record["progress"], record["waiting"]) != (seen.record["progress"], seen.record["waiting"]):
                seen.active_at = now
            seen.record = record
            if record["done"]:
                continue
            if now - seen.beat_at > self.timeout:
                messages.append(f"rank {rank} is not responding: no heartbeat for {now - seen.beat_at:.0f} s (stopped, "
                                f"frozen or gone; its last progress: {record['where']})")
            elif now - seen.active_at > self.timeout and not record["waiting"]:
                self.stuck.append(rank)
                messages.append(f"rank {rank} has made no progress for {now - seen.active_at:.0f} s outside collectives "
                                f"(its last progress: {record['where']})")
        return messages

    def start(self) -> Watchdog:
        """Publish the first heartbeat and start the watching thread (a daemon: it never holds up exit)."""
        self._publish()
        self._thread = threading.Thread(target=self._watch, name="fcos-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and mark this rank done (the others stop expecting its heartbeat)."""
        self._stop.set()
        if self._thread is not None:  # bounded: a store that stopped answering must not hold up the exit
            self._thread.join(timeout=5.0)
        self._done = True
        try:
            self._publish()
        except Exception:  # noqa: BLE001 - the store may be gone already at the end of a run: nothing to tell
            pass

    def _watch(self) -> None:
        main = threading.main_thread()
        while not self._stop.wait(self.interval):
            try:
                messages = self.poll(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - a store that stops answering is itself the news
                if self._stop.wait(max(1.0, 5 * self.interval)):
                    return  # the run ended and the store with it
                messages = [f"rank {self.rank} cannot reach the rendezvous store ({type(exc).__name__}: {exc}); without "
                            "torchrun it lives in rank 0's process, which is then stopped or gone"]
            if messages:
                frame = sys._current_frames().get(main.ident or -1)
                if self.stuck_here and frame is not None:
                    stack = "".join(traceback.format_stack(frame))
                    print(f"rank {self.rank} is stuck here:\n{stack}", file=sys.stderr, flush=True)
                if self.publish_verdict(messages, self.stuck):
                    self.await_readers()
                self.on_hang(messages)
                return

    @property
    def stuck_here(self) -> bool:
        """Whether this very rank was found stuck (its stack is then worth printing)."""
        return self.rank in self.stuck

    def publish_verdict(self, messages: list[str], stuck: Sequence[int] = ()) -> bool:
        """Tell the other ranks which rank hung (``stuck``: the ranks found alive but stuck; the first
        verdict stays: later ones only repeat it). Returns whether this call published it."""
        try:
            if not self.store.check([self._verdict_key]):
                self.store.set(self._verdict_key, json.dumps({"messages": messages, "stuck": list(stuck)}))
                return True
        except Exception:  # noqa: BLE001 - a store that is gone cannot carry the verdict; this rank still reports it
            pass
        return False

    def await_readers(self) -> bool:
        """Wait, at most ``grace`` seconds, until every other rank not yet done has read the verdict (its
        watching thread reads it within an interval, unless the rank is stopped). Returns whether all did."""
        pending = [r for r in range(self.world) if r != self.rank and not (r in self._seen and self._seen[r].record["done"])]
        deadline = time.monotonic() + self.grace
        while True:
            try:
                pending = [r for r in pending if not self.store.check([self._read_key(r)])]
            except Exception:  # noqa: BLE001 - the store is gone: nobody can read it any more
                return False
            if not pending or time.monotonic() >= deadline:
                return not pending
            time.sleep(min(0.01, self.interval))

    @property
    def _verdict_key(self) -> str:
        return f"{self.prefix}/verdict"

    def _verdict(self) -> dict | None:
        if not self.store.check([self._verdict_key]):
            return None
        return json.loads(self.store.get(self._verdict_key))

    def _key(self, rank: int) -> str:
        return f"{self.prefix}/{rank}"

    def _read_key(self, rank: int) -> str:
        return f"{self._verdict_key}/read/{rank}"

    def _publish(self) -> None:
        record = {"beat": self._beat, "progress": self._progress, "waiting": self._waiting > 0,
                  "where": self._where, "done": self._done}
        self.store.set(self._key(self.rank), json.dumps(record))

    def _read(self) -> dict[int, dict]:
        """The published records by rank (ranks not yet published are left out: ``get`` would wait)."""
        ranks = [r for r in range(self.world) if r in self._seen or self.store.check([self._key(r)])]
        values = self.store.multi_get([self._key(r) for r in ranks]) if ranks else []
        return {r: json.loads(v) for r, v in zip(ranks, values, strict=True)}


def _exit_with(messages: list[str]) -> None:
    """Stop this process: its main thread is blocked in a collective (or is the one stuck), which no
    exception can interrupt, so exit as NCCL's watchdog does. Writes are atomic: last.pt stays whole."""
    for message in messages:
        print(f"error: {message}. Stopping the run (the hang timeout is --ddp-timeout).", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)
