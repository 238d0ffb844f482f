"""Background training jobs: ``djenerator train`` in a child process, at most ``max_jobs`` at a time.

A child process (not a thread) so a job can use all cores without holding the server's GIL, and so
stopping it is a SIGINT: the training loop then saves a checkpoint and exits cleanly ("interrupted").
Progress is read from the run's own ``logs/losses.csv``; nothing else is tracked.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import RUN_ID_RE, RunStore, inside, shown


class JobError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    id: str
    run: str
    dataset: str
    preset: str
    steps: int
    proc: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.time)
    stop_requested: bool = False
    finished: float | None = None


class JobManager:
    def __init__(self, runs: RunStore, datasets_root: Path | None, max_jobs: int = 1):
        self.runs, self.datasets_root, self.max_jobs = runs, datasets_root, max_jobs
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.datasets_root is not None and self.max_jobs > 0

    def datasets(self) -> list[str]:
        if not self.enabled or not self.datasets_root.is_dir():
            return []
        out = []
        for p in sorted(self.datasets_root.iterdir()):
            real = inside(self.datasets_root, p)
            if real is not None and RUN_ID_RE.match(p.name) and (real / "manifest.json").is_file():
                out.append(p.name)
        return out

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.proc.poll() is None]

    def start(self, dataset: str, run: str, preset: str, steps: int, overrides: list[str]) -> Job:
        if not self.enabled:
            raise JobError(404, "training jobs are disabled: start the server with --datasets FOLDER")
        if dataset not in self.datasets():
            raise JobError(404, f"no prepared dataset named {shown(dataset)}")
        if not RUN_ID_RE.match(run) or ".." in run:
            raise JobError(422, "run must be a plain folder name (letters, digits, . _ -)")
        run_dir = self.runs.root / run
        if run_dir.exists() or run_dir.is_symlink():
            raise JobError(409, f"run {run!r} already exists; choose another name")
        with self._lock:
            if len(self.running()) >= self.max_jobs:
                raise JobError(429, f"at most {self.max_jobs} training job(s) at a time; stop one first")
            self.runs.root.mkdir(parents=True, exist_ok=True)
            run_dir.mkdir()
            log_path = run_dir / "train.out"
            cmd = [sys.executable, "-m", "djenerator", "train", str(self.datasets_root / dataset), "--run", str(run_dir),
                   "--preset", preset, "--steps", str(steps), "--quiet"]
            for o in overrides:
                cmd += ["--set", o]
            with open(log_path, "wb") as logf:
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            job = Job(uuid.uuid4().hex[:12], run, dataset, preset, steps, proc, log_path)
            self.jobs[job.id] = job
            return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise JobError(404, f"no job {shown(job_id)}")
        return job

    def stop(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.proc.poll() is None:
            job.stop_requested = True
            try:
                job.proc.send_signal(signal.SIGINT)  # the loop saves a checkpoint and exits
            except ProcessLookupError:
                pass
        return job

    def describe(self, job: Job) -> dict[str, Any]:
        rc = job.proc.poll()
        if rc is None:
            state = "stopping" if job.stop_requested else "running"
        elif job.finished is None:
            job.finished = time.time()
        if rc is not None:
            state = "stopped" if job.stop_requested else ("done" if rc == 0 else "failed")
        step = 0
        try:
            losses = self.runs.losses(self.runs.root.resolve() / job.run, max_points=2)
            if losses.get("step"):
                step = int(losses["step"][-1])
        except OSError:
            pass
        tail = ""
        try:
            with open(job.log_path, "rb") as f:
                f.seek(max(0, job.log_path.stat().st_size - 2000))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            pass
        return {"id": job.id, "run": job.run, "dataset": job.dataset, "preset": job.preset, "state": state,
                "returncode": rc, "step": step, "steps": job.steps,
                "progress": min(1.0, step / job.steps) if job.steps else 1.0,
                "started": job.started, "finished": job.finished, "log_tail": tail[-1000:]}

    def shutdown(self, timeout: float = 10.0) -> None:
        for job in self.running():
            self.stop(job.id)
        deadline = time.time() + timeout
        for job in list(self.jobs.values()):
            try:
                job.proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(job.proc.pid, signal.SIGKILL)
