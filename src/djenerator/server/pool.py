"""A fixed number of generation threads and a bounded number of requests waiting for them."""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class Busy(Exception):
    pass


class GenerationPool:
    """A fixed number of worker threads and a bounded number of requests waiting for them."""

    def __init__(self, workers: int, queue: int):
        self.workers, self.queue = max(1, workers), max(0, queue)
        self.capacity = self.workers + self.queue
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="djenerator-gen")
        self.in_flight = 0
        self.pending: dict[str, Future] = {}
        self.rejected = 0
        self.avg_seconds = 1.0
        self._lock = threading.Lock()

    def submit(self, key: str, fn: Callable[[], Any]) -> Future:
        with self._lock:
            if key in self.pending:  # the same request is already being made: share it
                return self.pending[key]
            if self.in_flight >= self.capacity:
                self.rejected += 1
                raise Busy()
            self.in_flight += 1
            t0 = time.perf_counter()
            fut = self.executor.submit(fn)
            self.pending[key] = fut

        def done(_f: Future) -> None:
            with self._lock:
                self.in_flight -= 1
                self.pending.pop(key, None)
                self.avg_seconds = 0.8 * self.avg_seconds + 0.2 * (time.perf_counter() - t0)

        fut.add_done_callback(done)
        return fut

    def retry_after(self) -> int:
        return int(min(60, max(1, math.ceil(self.avg_seconds * self.capacity / self.workers))))

    def stats(self) -> dict[str, Any]:
        return {"workers": self.workers, "queue": self.queue, "capacity": self.capacity,
                "in_flight": self.in_flight, "rejected": self.rejected}
