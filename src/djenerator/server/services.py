"""The objects one server shares between its routes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .guards import Auth
from .jobs import JobManager
from .pool import GenerationPool
from .store import ClipCache, ModelCache, RunStore


@dataclass
class Services:
    settings: Any  # app.Settings
    store: RunStore
    cache: ClipCache
    models: ModelCache
    pool: GenerationPool
    jobs: JobManager
    auth: Auth
