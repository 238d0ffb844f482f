"""``djenerator serve``: an HTTP API over a runs folder, plus the web page that uses it.

- ``GET  /api/health``                     liveness, queue, caches, limits
- ``GET  /api/runs``                       runs found under the runs folder
- ``GET  /api/runs/{run}``                 config, step, checkpoints, latest metrics, health log, evaluation
- ``GET  /api/runs/{run}/losses``          the loss log as columns (for charts)
- ``POST /api/generate``                   clips from a run/checkpoint (token-protected when a token is set)
- ``GET  /api/clips/{clip}``               a clip as audio/wav; HTTP range requests; ``?download=1``
- ``GET  /api/clips/{clip}/analysis``      waveform peaks + a spectrogram (uint8, base64) for drawing
- ``/api/datasets``, ``/api/jobs``          optional background training jobs (``--datasets``)

Generation runs in a bounded thread pool with a bounded queue: past ``workers + queue`` requests
in flight, the server answers 503 with Retry-After instead of piling up work. Identical requests
share one computation and one cache entry, so the same request always gets the same audio.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import math
import re
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ..config import BPM_LIMITS
from .jobs import JobError, JobManager
from .store import ClipCache, ModelCache, NotFound, RunStore, request_hash

log = logging.getLogger("djenerator.server")
STATIC = Path(__file__).parent / "static"


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
    max_count: int = 16
    max_steps: int = 32
    max_seconds: float = 120.0
    max_jobs: int = 1
    max_train_steps: int = 100_000
    device: str = "cpu"


# ---- request / response models ---------------------------------------------------------------------
class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: str = Field(..., description="Run id (a folder directly under the runs folder).", max_length=128)
    checkpoint: str = Field("latest", description="'latest' or a checkpoint id like step_0001000.pt.", max_length=64)
    count: int = Field(4, ge=1, description="Number of clips (ignored with interpolate_to: steps clips are made).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Same seed, same audio.")
    interpolate_to: Optional[int] = Field(None, ge=0, le=2**31 - 1,
                                          description="Spherical latent interpolation from seed to this seed.")
    steps: Optional[int] = Field(None, ge=2, description="Interpolation steps (clips); default max(count, 2).")
    bpm: Optional[float] = Field(None, ge=BPM_LIMITS[0], le=BPM_LIMITS[1], description="Requested tempo (tempo-conditioned models).")
    seconds: Optional[float] = Field(None, gt=0, description="Length of each piece, for models that make any length.")


class ClipOut(BaseModel):
    id: str
    index: int
    url: str
    download_url: str
    analysis_url: str
    filename: str
    seconds: float
    seed: int
    memorisation: Optional[dict[str, Any]] = None


class GenerateResponse(BaseModel):
    id: str
    run: str
    checkpoint: str
    step: int
    sample_rate: int
    cached: bool
    clips: list[ClipOut]


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(..., max_length=128, description="A prepared dataset folder under the datasets folder.")
    run: str = Field(..., max_length=128, description="Name of the new run folder.")
    preset: str = Field("original", max_length=64)
    steps: int = Field(1000, ge=1)
    overrides: list[str] = Field(default_factory=list, max_length=20, description="section.key=value overrides.")


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


# ---- analysis (waveform peaks + spectrogram) -------------------------------------------------------
def analyse(audio: np.ndarray, sr: int, n_peaks: int = 800, max_frames: int = 400) -> dict[str, Any]:
    x = np.asarray(audio, dtype=np.float32)
    T = len(x)
    n = max(1, min(n_peaks, T))
    edges = np.linspace(0, T, n + 1).astype(int)
    mins = [float(x[a:b].min()) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])]
    maxs = [float(x[a:b].max()) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])]
    n_fft = 512 if sr >= 16000 else 256
    n_fft = min(n_fft, 1 << max(4, int(math.log2(max(T, 16)))))
    hop = max(n_fft // 4, math.ceil(max(T - n_fft, 1) / max_frames))
    pad = np.pad(x, (n_fft // 2, n_fft // 2))
    starts = np.arange(0, max(len(pad) - n_fft, 0) + 1, hop)
    frames = np.stack([pad[s:s + n_fft] for s in starts]) * np.hanning(n_fft).astype(np.float32)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    db = 20 * np.log10(mag + 1e-7)
    top = float(db.max()) if db.size else 0.0
    lo = top - 80.0
    q = np.clip((db - lo) / 80.0 * 255.0, 0, 255).astype(np.uint8)
    return {
        "sample_rate": sr, "samples": T, "seconds": T / sr,
        "peaks": {"min": [round(v, 4) for v in mins], "max": [round(v, 4) for v in maxs]},
        "spectrogram": {"frames": int(q.shape[0]), "bins": int(q.shape[1]), "hop": int(hop), "n_fft": int(n_fft),
                        "db_max": round(top, 2), "db_range": 80.0, "max_hz": sr / 2,
                        "data": base64.b64encode(q.tobytes()).decode()},
    }


# ---- the app ---------------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, **kwargs: Any) -> FastAPI:
    s = settings or Settings(**kwargs)
    s.runs_dir = Path(s.runs_dir)
    if s.cache_dir is None:
        import hashlib

        tag = hashlib.sha256(str(s.runs_dir.resolve()).encode()).hexdigest()[:12]
        s.cache_dir = Path(tempfile.gettempdir()) / "djenerator-clips" / tag
    store = RunStore(s.runs_dir)
    cache = ClipCache(Path(s.cache_dir), s.cache_max_bytes, s.cache_max_entries)
    models = ModelCache(s.max_models, s.device)
    pool = GenerationPool(s.workers, s.queue)
    jobs = JobManager(store, Path(s.datasets_dir) if s.datasets_dir else None, s.max_jobs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        jobs.shutdown()
        pool.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="djenerator", version="0.1.0", lifespan=lifespan,
                  description="Generate music from trained djenerator runs; follow and start training.")
    app.state.settings, app.state.store, app.state.cache = s, store, cache
    app.state.models, app.state.pool, app.state.jobs = models, pool, jobs
    bearer = HTTPBearer(auto_error=False, description="Needed for write endpoints when the server has a token.")

    def require_token(cred: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if not s.token:
            return
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), s.token.encode()):
            raise HTTPException(401, "this endpoint needs 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(NotFound)
    async def not_found(_req: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(JobError)
    async def job_error(_req: Request, exc: JobError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    # ---- read-only ---------------------------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "runs_dir_exists": s.runs_dir.is_dir(),
            "auth_required": bool(s.token),
            "generation": pool.stats(),
            "models_cached": len(models),
            "model_loads": models.loads,
            "cache": cache.stats(),
            "jobs": {"enabled": jobs.enabled, "running": len(jobs.running()), "max": s.max_jobs},
            "limits": {"count": s.max_count, "steps": s.max_steps, "seconds": s.max_seconds,
                       "train_steps": s.max_train_steps},
        }

    @app.get("/api/runs", tags=["runs"])
    def list_runs() -> list[dict[str, Any]]:
        return store.list_runs()

    @app.get("/api/runs/{run}", tags=["runs"])
    def run_details(run: str) -> dict[str, Any]:
        run_dir = store.run_dir(run)
        ckpts = store.checkpoints(run_dir)
        latest = None
        try:
            latest = store.checkpoint(run_dir, "latest").name
        except NotFound:
            pass
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
            "clip_seconds": (data["clip_samples"] / data["sample_rate"]) if data.get("clip_samples") and data.get("sample_rate") else None,
            "health": store.health_lines(run_dir),
            "evaluation": store.memorisation(run_dir),
            "long_form": (cfg.get("model") or {}).get("arch") not in FIXED_WINDOW_ARCHS,
        }

    @app.get("/api/runs/{run}/losses", tags=["runs"])
    def run_losses(run: str, max_points: int = Query(1000, ge=2, le=20000)) -> dict[str, Any]:
        run_dir = store.run_dir(run)
        cols = store.losses(run_dir, max_points=max_points)
        return {"run": run, "columns": list(cols), "n": len(cols.get("step", [])), "data": cols}

    # ---- generation --------------------------------------------------------------------------------
    def check_limits(req: GenerateRequest) -> int:
        if req.count > s.max_count:
            raise HTTPException(422, f"count must be between 1 and {s.max_count}, got {req.count}")
        if req.steps is not None and req.interpolate_to is None:
            raise HTTPException(422, "steps is the number of interpolation steps: give interpolate_to as well")
        if req.interpolate_to is not None:
            n = req.steps if req.steps is not None else max(req.count, 2)
            if n > s.max_steps:
                raise HTTPException(422, f"steps must be between 2 and {s.max_steps}, got {n}")
            if req.seconds is not None:
                return _check_seconds(req, 1)
            return n
        if req.seconds is not None:
            return _check_seconds(req, req.count)
        return req.count

    def _check_seconds(req: GenerateRequest, n: int) -> int:
        if req.seconds > s.max_seconds:
            raise HTTPException(422, f"seconds must be at most {s.max_seconds:g}, got {req.seconds:g}")
        return n

    def make(req: GenerateRequest, ckpt: Path, n: int, key: str) -> dict[str, Any]:
        from .. import generate as gen
        from ..audio import write_wav

        G, cfg, step = models.get(ckpt)
        sr = cfg.data.sample_rate
        seeds = [req.seed] * n  # clip i of seed s: latent i of seed s (see generate.latents)
        if req.interpolate_to is not None and req.seconds is None:
            z = gen.interpolation_latents(cfg, req.seed, req.interpolate_to, n)
            audio = list(gen.generate_clips(G, cfg, n, req.seed, 16, req.bpm, z))
        elif req.seconds is not None:
            seeds = [req.seed + i for i in range(n)]  # one long piece per seed
            extra = {"interpolate_to": req.interpolate_to} if req.interpolate_to is not None else {}
            try:
                audio = [np.asarray(gen.generate_long(G, cfg, float(req.seconds), sd, bpm=req.bpm, **extra),
                                    dtype=np.float32).reshape(-1) for sd in seeds]
            except ValueError as e:  # e.g. a fixed-window model asked for more than one window
                raise HTTPException(422, str(e)) from None
        else:
            audio = list(gen.generate_clips(G, cfg, n, req.seed, 16, req.bpm))

        def write(tmp: Path) -> dict[str, Any]:
            clips = []
            tag = f"seed{req.seed}" + (f"-to-{req.interpolate_to}" if req.interpolate_to is not None else "")
            for i, a in enumerate(audio):
                write_wav(tmp / f"clip_{i:03d}.wav", a, sr)
                clips.append({"index": i, "seconds": len(a) / sr, "seed": seeds[i],
                              "filename": f"{req.run}_step{step}_{tag}_{i:02d}.wav"})
            return {"id": key, "run": req.run, "checkpoint": ckpt.name, "step": step, "sample_rate": sr,
                    "interpolated": req.interpolate_to is not None, "long_form": req.seconds is not None,
                    "request": req.model_dump(), "clips": clips, "created": time.time()}

        return cache.put(key, write)

    def response(meta: dict[str, Any], cached: bool) -> GenerateResponse:
        mem = None
        try:
            mem = store.memorisation(store.run_dir(meta["run"]))
        except NotFound:
            pass
        clips = []
        for c in meta["clips"]:
            cid = f"{meta['id']}-{c['index']:02d}"
            clips.append(ClipOut(id=cid, index=c["index"], url=f"/api/clips/{cid}",
                                 download_url=f"/api/clips/{cid}?download=1", analysis_url=f"/api/clips/{cid}/analysis",
                                 filename=c["filename"], seconds=c["seconds"], seed=c["seed"],
                                 memorisation=_flag_for(mem, meta, c)))
        return GenerateResponse(id=meta["id"], run=meta["run"], checkpoint=meta["checkpoint"], step=meta["step"],
                                sample_rate=meta["sample_rate"], cached=cached, clips=clips)

    @app.post("/api/generate", tags=["generate"], response_model=GenerateResponse,
              responses={401: {"description": "token missing or wrong"}, 404: {"description": "unknown run or checkpoint"},
                         422: {"description": "a limit was exceeded"}, 503: {"description": "busy; retry after Retry-After seconds"}})
    async def generate(req: GenerateRequest, _auth: None = Depends(require_token)):
        run_dir = store.run_dir(req.run)
        ckpt = store.checkpoint(run_dir, req.checkpoint)
        n = check_limits(req)
        st = ckpt.stat()
        key = request_hash({"run": req.run, "ckpt": ckpt.name, "mtime": st.st_mtime_ns, "size": st.st_size,
                            "n": n, "seed": req.seed, "to": req.interpolate_to, "bpm": req.bpm, "seconds": req.seconds,
                            "interp": req.interpolate_to is not None})
        meta = cache.meta(key)
        if meta is not None:
            return response(meta, cached=True)
        try:
            fut = pool.submit(key, lambda: make(req, ckpt, n, key))
        except Busy:
            raise HTTPException(503, "the generator is busy; try again shortly",
                                headers={"Retry-After": str(pool.retry_after())}) from None
        try:
            meta = await asyncio.wrap_future(fut)
        except HTTPException:
            raise
        except Exception as e:  # noqa: BLE001 - a model that cannot be loaded or run is reported, not a 500 page
            from ..checkpoint import CheckpointError

            if isinstance(e, (CheckpointError, ValueError)):
                raise HTTPException(422, f"cannot generate from {req.run}/{ckpt.name}: {e}") from None
            log.exception("generation failed")
            raise HTTPException(500, f"generation failed: {type(e).__name__}") from None
        return response(meta, cached=False)

    @app.head("/api/clips/{clip_id}", include_in_schema=False)
    @app.get("/api/clips/{clip_id}", tags=["clips"],
                   responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "partial content (Range)"}})
    def get_clip(clip_id: str, download: bool = False):
        path, meta, idx = cache.clip_path(clip_id)
        name = meta["clips"][idx]["filename"]
        return FileResponse(path, media_type="audio/wav", filename=name,
                            content_disposition_type="attachment" if download else "inline",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/clips/{clip_id}/analysis", tags=["clips"])
    def clip_analysis(clip_id: str) -> dict[str, Any]:
        import soundfile as sf

        path, meta, idx = cache.clip_path(clip_id)
        side = path.with_suffix(".analysis.json")
        if side.is_file():
            try:
                return json.loads(side.read_text())
            except ValueError:
                pass
        x, sr = sf.read(str(path), dtype="float32", always_2d=False)
        out = analyse(x if x.ndim == 1 else x.mean(axis=1), sr)
        try:
            side.write_text(json.dumps(out))
        except OSError:
            pass
        return out

    # ---- training jobs (optional) ------------------------------------------------------------------
    @app.get("/api/datasets", tags=["jobs"])
    def datasets() -> dict[str, Any]:
        return {"enabled": jobs.enabled, "datasets": jobs.datasets()}

    @app.get("/api/jobs", tags=["jobs"])
    def list_jobs() -> list[dict[str, Any]]:
        return [jobs.describe(j) for j in jobs.jobs.values()]

    @app.post("/api/jobs", tags=["jobs"], status_code=201)
    def start_job(req: JobRequest, _auth: None = Depends(require_token)) -> dict[str, Any]:
        from ..presets import PRESETS

        if req.preset not in PRESETS:
            raise HTTPException(422, f"unknown preset {req.preset!r} (choose from: {', '.join(PRESETS)})")
        if req.steps > s.max_train_steps:
            raise HTTPException(422, f"steps must be between 1 and {s.max_train_steps}, got {req.steps}")
        for o in req.overrides:
            if not re.fullmatch(r"[a-z_]+\.[a-z_]+=[^\s]{1,100}", o):
                raise HTTPException(422, f"override {o[:120]!r} must look like section.key=value")
        return jobs.describe(jobs.start(req.dataset, req.run, req.preset, req.steps, req.overrides))

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def job_status(job_id: str) -> dict[str, Any]:
        return jobs.describe(jobs.get(job_id))

    @app.post("/api/jobs/{job_id}/stop", tags=["jobs"])
    def stop_job(job_id: str, _auth: None = Depends(require_token)) -> dict[str, Any]:
        return jobs.describe(jobs.stop(job_id))

    # ---- the page ----------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


FIXED_WINDOW_ARCHS = ("dense", "wavegan")  # generators that make one window; long pieces need another family


def _flag_for(mem: dict[str, Any] | None, meta: dict[str, Any], clip: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation report's memorisation verdict for this clip, when the report covers it.

    The report describes clips generated by the evaluator with its seed; clip i of a plain request with
    the same seed (and checkpoint step, where the report records them) has the same latent, hence the
    same audio, so the verdict carries over. Reports that record no seed are matched by index alone,
    and the answer says so.
    """
    if not mem or meta.get("interpolated") or meta.get("long_form"):
        return None
    seed = meta["request"]["seed"]
    if mem.get("seed") is not None and mem["seed"] != seed:
        return None
    if mem.get("step") is not None and mem["step"] != meta["step"]:
        return None
    i = clip["index"]
    if i >= len(mem["clips"]) or mem["clips"][i].get("flagged") is None:
        return None
    c = mem["clips"][i]
    return {"flagged": bool(c["flagged"]), "corr": c.get("corr"), "source_file": c.get("source_file"),
            "source_time_s": c.get("source_time_s"),
            "matched_by": "seed and index" if mem.get("seed") is not None else "index (the report records no seed)"}


def serve(runs_dir: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, **kwargs: Any) -> None:
    import uvicorn

    app = create_app(Settings(runs_dir=Path(runs_dir), token=token, **kwargs))
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["Settings", "create_app", "serve", "analyse", "asdict"]
