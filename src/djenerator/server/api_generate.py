"""``POST /api/generate`` and the clip routes (``/api/clips/{clip}``, ``.../analysis``)."""

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from ..config import ConfigError
from .analysis import analyse
from .errors import BUSY, CONFLICT, INVALID, NOT_FOUND, UNAUTHORIZED
from .models import ClipOut, GenerateResponse
from .pool import Busy
from .services import Services
from .store import NotFound, request_hash

log = logging.getLogger("djenerator.server")


def check_limits(s, req) -> int:
    """Clips this request makes; 422 for limits and combinations the schema cannot express."""
    if req.count > s.max_count:
        raise HTTPException(422, f"count must be between 1 and {s.max_count}, got {req.count}")
    if req.steps is not None and req.interpolate_to is None:
        raise HTTPException(422, "steps is the number of interpolation steps: give interpolate_to as well")
    n = req.count
    if req.interpolate_to is not None:
        n = req.steps if req.steps is not None else max(req.count, 2)
        if n > s.max_steps:
            raise HTTPException(422, f"steps must be between 2 and {s.max_steps}, got {n}")
    if req.repeat is not None and req.seconds is None:
        raise HTTPException(422, "repeat shapes pieces: give seconds as well")
    if req.seconds is not None:
        if req.seconds > s.max_seconds:
            raise HTTPException(422, f"seconds must be at most {s.max_seconds:g}, got {req.seconds:g}")
        return 1 if req.interpolate_to is not None else req.count
    return n


def make_audio(G, cfg, req, n: int) -> tuple[list[np.ndarray], list[int]]:
    """The clips (or long pieces) of one request, and the seed of each."""
    from .. import generate as gen

    r = gen.Request(n=n, seed=req.seed, bpm=req.bpm, seconds=req.seconds, interpolate_to=req.interpolate_to,
                    repeat=req.repeat)
    try:
        audio = gen.render(G, cfg, r)
    except ConfigError as e:  # a request this model cannot make, e.g. --repeat for a model without a bar clock
        raise HTTPException(422, str(e)) from None
    except ValueError as e:  # e.g. a fixed-window model asked for more than one window
        if req.seconds is None:
            raise
        raise HTTPException(422, str(e)) from None
    return [np.asarray(a, dtype=np.float32).reshape(-1) for a in audio], r.seeds()


def make(sv: Services, req, ckpt: Path, n: int, key: str) -> tuple[dict[str, Any], float]:
    """Generate, write into the cache; (meta, promised until)."""
    from ..audio import write_wav
    from ..generate import file_tag

    G, cfg, step = sv.models.get(ckpt)
    sr = cfg.data.sample_rate
    audio, seeds = make_audio(G, cfg, req, n)

    def write(tmp: Path) -> dict[str, Any]:
        clips = []
        tag = file_tag(req.seed, req.interpolate_to)
        for i, a in enumerate(audio):
            write_wav(tmp / f"clip_{i:03d}.wav", a, sr)
            clips.append({"index": i, "seconds": len(a) / sr, "seed": seeds[i],
                          "filename": f"{req.run}_step{step}_{tag}_{i:02d}.wav"})
        return {"id": key, "run": req.run, "checkpoint": ckpt.name, "step": step, "sample_rate": sr,
                "interpolated": req.interpolate_to is not None, "long_form": req.seconds is not None,
                "request": req.model_dump(), "clips": clips, "created": time.time()}

    return sv.cache.put(key, write)


def response(sv: Services, meta: dict[str, Any], until: float, cached: bool) -> GenerateResponse:
    mem = None
    try:
        mem = sv.store.memorisation(sv.store.run_dir(meta["run"]))
    except NotFound:
        pass
    clips = []
    for c in meta["clips"]:
        cid = f"{meta['id']}-{c['index']:02d}"
        q = sv.auth.clip_query(cid, until)
        url = f"/api/clips/{cid}"
        clips.append(ClipOut(id=cid, index=c["index"], url=url + (f"?{q}" if q else ""),
                             download_url=f"{url}?download=1" + (f"&{q}" if q else ""),
                             analysis_url=f"{url}/analysis" + (f"?{q}" if q else ""),
                             filename=c["filename"], seconds=c["seconds"], seed=c["seed"],
                             memorisation=flag_for(mem, meta, c)))
    return GenerateResponse(id=meta["id"], run=meta["run"], checkpoint=meta["checkpoint"], step=meta["step"],
                            sample_rate=meta["sample_rate"], cached=cached, expires_at=until,
                            ttl_seconds=sv.cache.ttl, clips=clips)


def generate_router(sv: Services, GenerateRequest) -> APIRouter:
    r = APIRouter(tags=["generate"], dependencies=[Depends(sv.auth.require())])
    s, store, cache, pool = sv.settings, sv.store, sv.cache, sv.pool

    @r.post("/api/generate", response_model=GenerateResponse,
            responses={**UNAUTHORIZED, **NOT_FOUND, **CONFLICT, **INVALID, **BUSY})
    async def generate(req: GenerateRequest):  # type: ignore[valid-type]
        """Clips from a run/checkpoint. Identical requests share one computation and one cache entry."""
        ckpt = store.checkpoint(store.run_dir(req.run), req.checkpoint)
        n = check_limits(s, req)
        st = ckpt.stat()
        key = request_hash({"run": req.run, "ckpt": ckpt.name, "mtime": st.st_mtime_ns, "size": st.st_size,
                            "n": n, "seed": req.seed, "to": req.interpolate_to, "bpm": req.bpm, "seconds": req.seconds,
                            "interp": req.interpolate_to is not None})
        hit = cache.promised_meta(key)
        if hit is not None:
            return response(sv, *hit, cached=True)
        cache.check_room()
        try:
            fut = pool.submit(key, lambda: make(sv, req, ckpt, n, key))
        except Busy:
            raise HTTPException(503, "the generator is busy; try again shortly",
                                headers={"Retry-After": str(pool.retry_after())}) from None
        try:
            meta, until = await asyncio.wrap_future(fut)
        except HTTPException:
            raise
        except Exception as e:  # noqa: BLE001 - a model that cannot be loaded or run is reported, not a 500 page
            from ..checkpoint import CheckpointError
            from .store import CacheFull

            if isinstance(e, CacheFull):
                raise
            if isinstance(e, (CheckpointError, ValueError)):
                raise HTTPException(422, f"cannot generate from {req.run}/{ckpt.name}: {e}") from None
            log.exception("generation failed")
            raise HTTPException(500, f"generation failed: {type(e).__name__}") from None
        return response(sv, meta, until, cached=False)

    return r


def clips_router(sv: Services) -> APIRouter:
    r = APIRouter(tags=["clips"], dependencies=[Depends(sv.auth.require_clip())],
                  responses={**UNAUTHORIZED, **NOT_FOUND})
    cache = sv.cache

    @r.head("/api/clips/{clip_id}", include_in_schema=False)
    @r.get("/api/clips/{clip_id}", response_class=FileResponse,
           responses={200: {"content": {"audio/wav": {}}, "description": "the clip"},
                      206: {"content": {"audio/wav": {}}, "description": "partial content (Range)"}})
    def get_clip(clip_id: str, download: bool = False):
        """A clip as audio/wav; HTTP range requests; ``?download=1`` for an attachment."""
        path, meta, idx = cache.clip_path(clip_id)
        name = meta["clips"][idx]["filename"]
        return FileResponse(path, media_type="audio/wav", filename=name,
                            content_disposition_type="attachment" if download else "inline",
                            headers={"Cache-Control": "private, max-age=3600"})

    @r.get("/api/clips/{clip_id}/analysis")
    def clip_analysis(clip_id: str) -> dict[str, Any]:
        """Waveform peaks and a spectrogram (uint8, base64) for drawing."""
        import soundfile as sf

        path, _meta, _idx = cache.clip_path(clip_id)
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

    return r


def flag_for(mem: dict[str, Any] | None, meta: dict[str, Any], clip: dict[str, Any]) -> dict[str, Any] | None:
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
