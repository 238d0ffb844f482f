"""``/api/health`` (open) and the read-only run routes (token-protected when the server has a token)."""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Query

from ..config import BPM_LIMITS
from .errors import NOT_FOUND, UNAUTHORIZED
from .services import Services
from .store import BrokenRun, NotFound

def health_router(sv: Services) -> APIRouter:
    r = APIRouter(tags=["service"])
    s = sv.settings

    @r.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness, queue, caches and limits. Never needs the token."""
        return {
            "status": "ok",
            "runs_dir_exists": s.runs_dir.is_dir(),
            "auth_required": sv.auth.token is not None,
            "generation": sv.pool.stats(),
            "models_cached": len(sv.models),
            "model_loads": sv.models.loads,
            "cache": sv.cache.stats(),
            "clip_ttl_seconds": sv.cache.ttl,
            "jobs": {"enabled": sv.jobs.enabled, "running": len(sv.jobs.running()), "max": s.max_jobs},
            "limits": {"count": s.max_count, "steps": s.max_steps, "seconds": s.max_seconds,
                       "train_steps": s.max_train_steps, "bpm": list(BPM_LIMITS), "body_bytes": s.max_body_bytes},
        }

    return r


def runs_router(sv: Services) -> APIRouter:
    r = APIRouter(tags=["runs"], dependencies=[Depends(sv.auth.require())], responses={**UNAUTHORIZED})
    store = sv.store

    @r.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        """Runs found under the runs folder."""
        return store.list_runs()

    @r.get("/api/runs/{run}", responses={**NOT_FOUND})
    def run_details(run: str) -> dict[str, Any]:
        """Config, step, checkpoints, latest metrics, health log and evaluation of one run."""
        return describe_run(store, run)

    @r.get("/api/runs/{run}/losses", responses={**NOT_FOUND})
    def run_losses(run: str, max_points: int = Query(1000, ge=2, le=20000)) -> dict[str, Any]:
        """The loss log as columns (for charts)."""
        cols = store.losses(store.run_dir(run), max_points=max_points)
        return {"run": run, "columns": list(cols), "n": len(cols.get("step", [])), "data": cols}

    return r


def describe_run(store, run: str) -> dict[str, Any]:
    run_dir = store.run_dir(run)
    ckpts = store.checkpoints(run_dir)
    latest, problems = None, []
    try:
        latest = store.checkpoint(run_dir, "latest").name
    except NotFound:
        pass
    except BrokenRun as e:
        problems.append(str(e))
    losses = store.losses(run_dir, max_points=2)
    last = {k: v[-1] for k, v in losses.items()} if losses.get("step") else None
    cfg = store.config(run_dir)
    data = cfg.get("data") or {}
    return {
        "id": run,
        "config": cfg,
        "step": int(re.search(r"\d+", latest).group()) if latest else 0,
        "latest_checkpoint": latest,
        "checkpoints": [{"id": p.name, "step": int(re.search(r"\d+", p.name).group()), "bytes": p.stat().st_size,
                         "modified": p.stat().st_mtime} for p in ckpts],
        "latest_metrics": last,
        "clip_seconds": (data["clip_samples"] / data["sample_rate"])
        if data.get("clip_samples") and data.get("sample_rate") else None,
        "health": store.health_lines(run_dir),
        "evaluation": store.memorisation(run_dir),
        "long_form": _long_form((cfg.get("model") or {}).get("arch")),
        "problems": problems,
    }


def _long_form(arch: Any) -> bool:
    """Whether a run's generator makes pieces of any length (the model family says; torch loads on first use)."""
    from ..models import ARCHS

    return isinstance(arch, str) and arch in ARCHS and ARCHS[arch].longform


__all__ = ["health_router", "runs_router", "describe_run"]
