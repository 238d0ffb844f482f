"""Request and response bodies. Requests are strict (no true/false or strings as numbers, finite numbers
only, no unknown fields) and carry the server's limits in their schema, so the OpenAPI spec states them."""
from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..config import BPM_LIMITS
from ..presets import DEFAULT_PRESET

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def _a_number(v: Any) -> Any:
    """JSON numbers only: true/false and strings are not numbers (12.0 is an integer, as in JSON Schema)."""
    if isinstance(v, (bool, str, bytes)):
        raise PydanticCustomError("number_type", "Input should be a JSON number, not {kind}",
                                  {"kind": "true/false" if isinstance(v, bool) else "a string"})
    return v


Int = Annotated[int, BeforeValidator(_a_number)]
Float = Annotated[float, BeforeValidator(_a_number)]


def nullable(kind: type, json_type: str, doc: Optional[dict[str, Any]] = None, **limits: Any) -> Any:
    """``Optional[kind]`` with its limits, documented as ``{"type": [json_type, "null"], ...limits}``.

    (Not pydantic's ``anyOf``: schemathesis drops the limits inside it and fuzzes with out-of-range "valid" data.)
    """
    keys = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum"}
    return Annotated[Optional[kind], Field(**limits),
                     WithJsonSchema({"type": [json_type, "null"], **{keys[k]: v for k, v in limits.items()},
                                     **(doc or {})})]
OVERRIDE_RE = r"^[a-z_]+\.[a-z_]+=[!-~]{1,100}$"  # printable ASCII, no spaces: one meaning in every regex dialect
SEED_MAX = 2**31 - 1


def request_models(max_count: int, max_steps: int, max_seconds: float, max_train_steps: int,
                   presets: list[str]) -> tuple[type[BaseModel], type[BaseModel]]:
    """GenerateRequest and JobRequest with this server's limits in their JSON schema."""

    class GenerateRequest(BaseModel):
        model_config = STRICT
        run: str = Field(..., description="Run id (a folder directly under the runs folder).", max_length=128)
        checkpoint: str = Field("latest", description="'latest' or a checkpoint id like step_0001000.pt.",
                                max_length=64)
        count: Int = Field(4, ge=1, json_schema_extra={"maximum": max_count},
                           description=f"Number of clips, 1 to {max_count} (with interpolate_to: see steps).")
        seed: Int = Field(0, ge=0, le=SEED_MAX, description="Same seed, same audio.")
        interpolate_to: nullable(Int, "integer", ge=0, le=SEED_MAX) = Field(None,
                                              description="Spherical latent interpolation from seed to this seed.")
        steps: nullable(Int, "integer", ge=2, doc={"maximum": max_steps}) = Field(
                                     None, description=f"Interpolation steps (clips), 2 to {max_steps}; needs "
                                                 "interpolate_to. Default max(count, 2).")
        bpm: nullable(Float, "number", ge=BPM_LIMITS[0], le=BPM_LIMITS[1]) = Field(None,
                                     description="Requested tempo (tempo-conditioned models).")
        seconds: nullable(Float, "number", gt=0, doc={"maximum": max_seconds}) = Field(
                                         None, description=f"Length of each piece, at most {max_seconds:g} s, for "
                                                     "models that make any length.")
        repeat: nullable(Float, "number", ge=0, le=1) = Field(None, description="With seconds: how much each "
                              "bar repeats the bar before, 0 (as drawn) to 1 (each run of four bars repeats bar by "
                              "bar); two-stage models only (bars, bars-gan). Default: the model's model.bar_repeat.")

    class JobRequest(BaseModel):
        model_config = STRICT
        dataset: str = Field(..., max_length=128, description="A prepared dataset folder under the datasets folder.")
        run: str = Field(..., max_length=128, description="Name of the new run folder.")
        preset: str = Field(DEFAULT_PRESET, max_length=64, json_schema_extra={"enum": presets},
                            description="A preset name.")
        steps: Int = Field(1000, ge=1, json_schema_extra={"maximum": max_train_steps},
                           description=f"Training steps, 1 to {max_train_steps}.")
        overrides: list[Annotated[str, Field(max_length=120, json_schema_extra={"pattern": OVERRIDE_RE})]] = Field(
            default_factory=list, max_length=20, description="section.key=value overrides.")

    return GenerateRequest, JobRequest


class ClipOut(BaseModel):
    id: str
    index: int
    url: str = Field(..., description="The clip as audio/wav; signed (works without the token) until expires_at.")
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
    expires_at: float = Field(..., description="Unix time until which these clip URLs are guaranteed to work.")
    ttl_seconds: float = Field(..., description="How long after a response its clips stay fetchable.")
    clips: list[ClipOut]
