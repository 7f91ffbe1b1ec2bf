"""Dynamic batching: requests that arrive together are run as one batch, as Triton's dynamic batcher and
TorchServe's batch_size / max_batch_delay do.

Written here, about 150 lines, because nothing to import does it: FastAPI and uvicorn have no batching,
and the model servers' batchers (Triton's C++ scheduler, TorchServe's Java frontend, BentoML's runner)
are parts of those servers, not libraries a FastAPI app can use.

The rules:

- :meth:`BatchQueue.put` queues an item or, with ``max_queue`` items already waiting, raises
  :class:`QueueFullError` at once (the caller answers 503 with ``Retry-After``): a flood is refused,
  not buffered;
- ``workers`` threads run batches (the event loop stays free). One worker at a time gathers a batch: it
  takes the oldest waiting item and more, up to ``max_batch``, until ``max_delay_s`` after that item
  arrived (an item that already waited that long, because every worker was busy, leaves at once with
  whatever waits beside it), then runs ``run_batch(items)`` -> one result, or one exception, per item;
- it waits for more items only while another batch runs: with no batch running the model would sit
  idle while the wait delays the items already there, so they leave at once (a lone request costs
  what it costs unbatched; under load a batch runs while the next one fills);
- every queued item is answered exactly once: by its result, by its own exception, or, when
  ``run_batch`` raised, by that exception; an item withdrawn before its batch started (its request
  timed out or went away) is never run;
- :meth:`BatchQueue.submit` (async) waits for the answer: an item not started within ``queue_timeout_s``
  is withdrawn (:class:`QueueTimeoutError`, 503), one not answered within ``timeout_s``
  (:class:`RequestTimeoutError`, 504) is left to finish and its answer dropped;
- :meth:`BatchQueue.close` refuses new items, lets the workers run everything already queued, and
  waits for them (graceful shutdown drains the queue).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchQueue", "QueueClosedError", "QueueFullError", "QueueTimeoutError", "RequestTimeoutError"]

RunBatch = Callable[[list[Any]], Sequence[Any]]  # items -> one result or one exception instance per item


class QueueFullError(Exception):
    """``max_queue`` items already wait."""


class QueueClosedError(Exception):
    """The queue is shutting down and takes no new items."""


class QueueTimeoutError(Exception):
    """Not started within the queue timeout: withdrawn, never run."""


class RequestTimeoutError(Exception):
    """Not answered within the request timeout."""


@dataclass(eq=False)
class _Job:
    item: Any
    arrived: float
    future: Future = field(default_factory=Future)
    state: str = "queued"  # queued -> running -> done, or queued -> withdrawn


class BatchQueue:
    """Items in, batches of up to ``max_batch`` run by ``workers`` threads, one answer per item out."""

    def __init__(self, run_batch: RunBatch, *, max_batch: int = 1, max_delay_s: float = 0.0, max_queue: int = 100,
                 workers: int = 1, on_batch: Callable[[int, float], None] | None = None, name: str = "fcos-batch"):
        if max_batch < 1 or max_queue < 1 or workers < 1 or max_delay_s < 0:
            raise ValueError(f"need max_batch, max_queue, workers >= 1 and max_delay_s >= 0, got {max_batch}, "
                             f"{max_queue}, {workers}, {max_delay_s}")
        self.run_batch, self.on_batch = run_batch, on_batch
        self.max_batch, self.max_delay_s, self.max_queue, self.workers = max_batch, max_delay_s, max_queue, workers
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._gathering = False  # one worker at a time gathers a batch, so batches fill before the next starts
        self._closing = False
        self.active = 0  # items in batches running now
        self.max_active = 0
        self.batch_sizes: Counter[int] = Counter()  # batch size -> batches run
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Items queued, not yet in a running batch."""
        return len(self._jobs)

    def put(self, item: Any) -> _Job:
        with self._cond:
            if self._closing:
                raise QueueClosedError("shutting down")
            if len(self._jobs) >= self.max_queue:
                raise QueueFullError(f"{len(self._jobs)} requests already wait for {self.workers} inference slots")
            job = _Job(item, time.monotonic())
            self._jobs.append(job)
            self._cond.notify_all()  # the gathering worker, or an idle one
        return job

    def withdraw(self, job: _Job) -> bool:
        """Take a job out before its batch starts: True if it will never run."""
        with self._cond:
            if job.state != "queued":
                return False
            job.state = "withdrawn"
            if job in self._jobs:  # else it is in a batch being gathered, which skips it
                self._jobs.remove(job)
            return True

    async def submit(self, item: Any, *, timeout_s: float, queue_timeout_s: float | None = None) -> Any:
        """Queue ``item`` and wait for its answer (the result, or its exception raised here)."""
        job = self.put(item)
        start = time.monotonic()
        answer = asyncio.wrap_future(job.future)
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even if nobody awaits it
        first = timeout_s if queue_timeout_s is None else min(queue_timeout_s, timeout_s)
        try:
            try:
                return await asyncio.wait_for(asyncio.shield(answer), first)
            except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
                if self.withdraw(job):
                    raise (RequestTimeoutError if first >= timeout_s else QueueTimeoutError)() from None
            try:  # running: wait for the rest of the request's time
                return await asyncio.wait_for(asyncio.shield(answer), timeout_s - (time.monotonic() - start))
            except asyncio.TimeoutError:
                raise RequestTimeoutError() from None
        except asyncio.CancelledError:  # the client went away: never run it if it has not started
            self.withdraw(job)
            raise

    def close(self, timeout_s: float | None = None) -> None:
        """Refuse new items, run every queued one, wait up to ``timeout_s`` for the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (batch := self._gather()) is not None:
            if batch:
                self._run(batch)

    def _take(self, batch: list[_Job]) -> None:
        while self._jobs and len(batch) < self.max_batch:
            batch.append(self._jobs.popleft())

    def _gather(self) -> list[_Job] | None:
        """The next batch (possibly empty: all withdrawn while it gathered); None when closed and drained."""
        with self._cond:
            while not self._jobs or self._gathering:
                if self._closing and not self._jobs:
                    return None
                self._cond.wait()
            self._gathering = True
            batch: list[_Job] = []
            self._take(batch)
            deadline = batch[0].arrived + self.max_delay_s
            while len(batch) < self.max_batch and not self._closing and self.active > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                self._take(batch)
            batch = [job for job in batch if job.state == "queued"]
            for job in batch:
                job.state = "running"
            self.active += len(batch)
            self.max_active = max(self.max_active, self.active)
            self._gathering = False
            self._cond.notify_all()  # another worker may gather the next batch now
            return batch

    def _run(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            results = list(self.run_batch([job.item for job in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch gave {len(results)} answers for {len(batch)} items")
        except Exception as exc:  # the whole batch failed: each item gets the error
            results = [exc] * len(batch)
        seconds = time.perf_counter() - start
        for job, result in zip(batch, results, strict=True):
            job.state = "done"
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        with self._cond:
            self.active -= len(batch)
            self.batch_sizes[len(batch)] += 1
        if self.on_batch is not None:
            self.on_batch(len(batch), seconds)
