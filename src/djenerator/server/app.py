"""``djenerator serve``: an HTTP API over a runs folder, plus the web page that uses it.

- ``GET  /api/health``                     liveness, queue, caches, limits (never needs the token)
- ``GET  /api/runs``                       runs found under the runs folder
- ``GET  /api/runs/{run}``                 config, step, checkpoints, latest metrics, health log, evaluation
- ``GET  /api/runs/{run}/losses``          the loss log as columns (for charts)
- ``POST /api/generate``                   clips from a run/checkpoint
- ``GET  /api/clips/{clip}``               a clip as audio/wav; HTTP range requests; ``?download=1``
- ``GET  /api/clips/{clip}/analysis``      waveform peaks + a spectrogram (uint8, base64) for drawing
- ``/api/datasets``, ``/api/jobs``          optional background training jobs (``--datasets``)

With a token, every route but ``/api/health``, the page and its static files needs it (clip URLs from
/api/generate carry a signature instead, valid while the result is promised). Generation runs in a
bounded thread pool with a bounded queue: past ``workers + queue`` requests in flight, the server answers
503 with Retry-After. Identical requests share one computation and one cache entry; a result stays in the
cache for ``clip_ttl`` seconds after a response names it. See guards.py for the Host and body rules.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from . import errors
from .analysis import analyse
from .api_generate import clips_router, generate_router
from .api_jobs import jobs_router
from .api_runs import health_router, runs_router
from .guards import Auth, Guard
from .jobs import JobManager
from .models import request_models
from .pool import Busy, GenerationPool
from .services import Services
from .store import ClipCache, ModelCache, RunStore

log = logging.getLogger("djenerator.server")
STATIC = Path(__file__).parent / "static"


class ServerConfigError(ValueError):
    """A setting the server cannot start with (one sentence for the CLI)."""


@dataclass
class Settings:
    runs_dir: Path
    token: Optional[str] = None
    cache_dir: Optional[Path] = None
    datasets_dir: Optional[Path] = None
    workers: int = 2
    queue: int = 8
    max_models: int = 4
    cache_max_bytes: int = 256 * 1024 * 1024
    cache_max_entries: int = 200
    clip_ttl: float = 600.0  # seconds a generated result stays fetchable after a response names it
    max_count: int = 16
    max_steps: int = 32
    max_seconds: float = 120.0
    max_jobs: int = 1
    max_train_steps: int = 100_000
    max_body_bytes: int = 64 * 1024
    allowed_hosts: Optional[set[str]] = None  # Host names answered to; None: no check (in-process use)
    port: Optional[int] = None  # the bound port, checked against a port in the Host header
    device: str = "cpu"


def open_cache(s: Settings) -> ClipCache:
    if s.cache_dir is None:
        tag = hashlib.sha256(str(s.runs_dir.resolve()).encode()).hexdigest()[:12]
        s.cache_dir = Path(tempfile.gettempdir()) / "djenerator-clips" / tag
    d = Path(s.cache_dir)
    if d.exists() and not d.is_dir():
        raise ServerConfigError(f"--cache-dir {d} is a file, not a folder; give a folder (it is created if missing)")
    try:
        return ClipCache(d, s.cache_max_bytes, s.cache_max_entries, s.clip_ttl)
    except OSError as e:
        raise ServerConfigError(f"cannot use {d} as the clip cache folder: {e.strerror or e}") from None


def create_app(settings: Settings | None = None, **kwargs: Any) -> FastAPI:
    """The FastAPI app: shared services, error handlers, guards, routers and the page."""
    s = settings or Settings(**kwargs)
    s.runs_dir = Path(s.runs_dir)
    store = RunStore(s.runs_dir)
    pool = GenerationPool(s.workers, s.queue)
    sv = Services(s, store, open_cache(s), ModelCache(s.max_models, s.device), pool,
                  JobManager(store, Path(s.datasets_dir) if s.datasets_dir else None, s.max_jobs), Auth(s.token))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        sv.jobs.shutdown()
        pool.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="djenerator", version="0.1.0", lifespan=lifespan,
                  description="Generate music from trained djenerator runs; follow and start training. "
                              "Every error answers {\"detail\": \"<one sentence>\"}.")
    app.state.settings, app.state.store, app.state.cache = s, store, sv.cache
    app.state.models, app.state.pool, app.state.jobs, app.state.services = sv.models, pool, sv.jobs, sv
    errors.install(app)
    from ..presets import PRESETS

    GenerateRequest, JobRequest = request_models(s.max_count, s.max_steps, s.max_seconds, s.max_train_steps,
                                                 list(PRESETS))
    for router in (health_router(sv), runs_router(sv), generate_router(sv, GenerateRequest), clips_router(sv),
                   jobs_router(sv, JobRequest)):
        app.include_router(router, responses={**errors.COMMON, **errors.INVALID})

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, max_body=s.max_body_bytes, hosts=s.allowed_hosts, port=s.port)
    return app


def serve(runs_dir: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          allow_hosts: tuple[str, ...] = (), on_ready: Optional[Callable[[], None]] = None, **kwargs: Any) -> None:
    """Run the app under uvicorn; the Host check answers to ``host``'s names plus ``allow_hosts``."""
    import uvicorn

    from .guards import allowed_hosts

    app = create_app(Settings(runs_dir=Path(runs_dir), token=token, allowed_hosts=allowed_hosts(host, allow_hosts),
                              port=port, **kwargs))
    if on_ready is not None:
        on_ready()
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["Settings", "ServerConfigError", "create_app", "serve", "analyse", "asdict", "Busy"]
