"""A run's time budget: when it is spent, and how much of it is behind the run.

Two clocks: wall-clock seconds (``train --minutes``) and process CPU seconds (``train --cpu-minutes``, what
``benchmarks/quality.py`` compares presets at, since machine load changes a run's steps per wall second and not
per CPU second). ``train.lr_fall`` reads :meth:`Budget.share` to let the learning rates fall as the budget
runs out.
"""
from __future__ import annotations

import time


class Budget:
    """Stop conditions shared by both loops: Ctrl-C in the two-stage loops (``stop``), a wall-clock limit, a
    process-CPU limit; either limit may be None."""

    def __init__(self, max_seconds: float | None = None, max_cpu_seconds: float | None = None):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.max_seconds, self.max_cpu = max_seconds, max_cpu_seconds
        self.stop: list[bool] = []

    @property
    def limited(self) -> bool:
        """Whether either clock has a limit."""
        return self.max_seconds is not None or self.max_cpu is not None

    def scale(self) -> tuple[float, str]:
        """What a progress bar over this budget counts: (its total in seconds, their name); the wall clock's limit
        when there is one, else the CPU clock's. The bar's position is ``share() x total``."""
        if self.max_seconds is not None:
            return float(self.max_seconds), "s of the time budget"
        return float(self.max_cpu or 0.0), "CPU-s of the CPU budget"

    def halt(self) -> str:
        """Why to stop now ("interrupted", "time budget"), or ""."""
        if self.stop:
            return "interrupted"
        return "time budget" if self.share() > 1.0 else ""

    def share(self) -> float:
        """The larger share of the two limits used so far (0 without limits; above 1 once one is spent)."""
        used = 0.0
        if self.max_seconds is not None:
            used = (time.perf_counter() - self.wall0) / max(self.max_seconds, 1e-9)
        if self.max_cpu is not None:
            used = max(used, (time.process_time() - self.cpu0) / max(self.max_cpu, 1e-9))
        return used
