"""Every 4xx answer has one shape, ``{"detail": "<one sentence>"}`` (plus ``errors`` for 422s), and never echoes input.

Validation errors keep the field and the reason but drop pydantic's ``input`` and ``ctx`` (a 100 MB body or a
NaN, echoed back, was a denial of service or a 500). ``RESPONSES`` documents the answers in the OpenAPI spec.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .jobs import JobError
from .store import BrokenRun, CacheFull, NotFound

log = logging.getLogger("djenerator.server")


class FieldError(BaseModel):
    field: str = Field(..., description="Where the problem is, e.g. 'count' or 'query.max_points'.")
    message: str
    type: str


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="One sentence saying what was wrong.")
    errors: Optional[list[FieldError]] = Field(None, description="Per-field problems (422 only).")


def _doc(text: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": text}


BAD_HOST = {400: _doc("Host header is not a name of this server (DNS-rebinding guard), or an unreadable body")}
TOO_LARGE = {413: _doc("request body over the size limit")}
INVALID = {422: _doc("a value is missing, of the wrong type, not finite, or outside its documented limits")}
UNAUTHORIZED = {401: _doc("token missing or wrong (the server was started with a token)")}
NOT_FOUND = {404: _doc("unknown or malformed id (run, checkpoint, clip, job, dataset)")}
CONFLICT = {409: _doc("the resource is in a state that prevents this (e.g. a damaged checkpoints/latest pointer, "
                      "an existing run name)")}
TOO_MANY = {429: _doc("too many training jobs running")}
BUSY = {503: _doc("busy, or the clip cache is full of results still promised to clients; retry after "
                  "Retry-After seconds")}
COMMON = {**BAD_HOST, **TOO_LARGE}


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        if e.get("type") == "json_invalid":
            loc, msg = ["body"], "the body is not valid JSON"
        else:
            msg = str(e.get("msg", "invalid value"))
        field = ".".join(loc) or "body"  # an unknown key is named, but never at length
        field = field if len(field) <= 64 else field[:60] + "..."
        out.append({"field": field, "message": msg[:200], "type": str(e.get("type", "value_error"))})
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the ErrorResponse shape."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError):
        errs = field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errs[:5])
        return JSONResponse({"detail": detail, "errors": errs[:20]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(NotFound)
    async def not_found(_req: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(BrokenRun)
    async def broken(_req: Request, exc: BrokenRun):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(CacheFull)
    async def cache_full(_req: Request, exc: CacheFull):
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(JobError)
    async def job_error(_req: Request, exc: JobError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def crash(_req: Request, exc: Exception):
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)
