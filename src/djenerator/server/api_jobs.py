"""Optional background training jobs (``--datasets``): ``/api/datasets`` and ``/api/jobs``."""

import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from .errors import CONFLICT, INVALID, NOT_FOUND, TOO_MANY, UNAUTHORIZED
from .models import OVERRIDE_RE
from .services import Services
from .store import shown


def jobs_router(sv: Services, JobRequest) -> APIRouter:
    r = APIRouter(tags=["jobs"], dependencies=[Depends(sv.auth.require())], responses={**UNAUTHORIZED})
    s, jobs = sv.settings, sv.jobs

    @r.get("/api/datasets")
    def datasets() -> dict[str, Any]:
        """Prepared datasets that training jobs can use."""
        return {"enabled": jobs.enabled, "datasets": jobs.datasets()}

    @r.get("/api/jobs")
    def list_jobs() -> list[dict[str, Any]]:
        """Training jobs started by this server."""
        return [jobs.describe(j) for j in jobs.jobs.values()]

    @r.post("/api/jobs", status_code=201, responses={**NOT_FOUND, **CONFLICT, **INVALID, **TOO_MANY})
    def start_job(req: JobRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        """Start ``djenerator train`` on a prepared dataset, in a child process."""
        from ..presets import PRESETS

        if req.preset not in PRESETS:
            raise HTTPException(422, f"unknown preset {shown(req.preset)} (choose from: {', '.join(PRESETS)})")
        if req.steps > s.max_train_steps:
            raise HTTPException(422, f"steps must be between 1 and {s.max_train_steps}, got {req.steps}")
        for o in req.overrides:
            if not re.fullmatch(OVERRIDE_RE, o):
                raise HTTPException(422, f"override {shown(o)} must look like section.key=value")
        return jobs.describe(jobs.start(req.dataset, req.run, req.preset, req.steps, req.overrides))

    @r.get("/api/jobs/{job_id}", responses={**NOT_FOUND})
    def job_status(job_id: str) -> dict[str, Any]:
        """One job: state, step, progress, the end of its log."""
        return jobs.describe(jobs.get(job_id))

    @r.post("/api/jobs/{job_id}/stop", responses={**NOT_FOUND})
    def stop_job(job_id: str) -> dict[str, Any]:
        """Ask a job to stop (it saves a checkpoint first)."""
        return jobs.describe(jobs.stop(job_id))

    return r
