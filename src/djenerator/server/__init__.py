"""HTTP API and web page over a runs folder (`djenerator serve`)."""
from .app import Settings, create_app, serve

__all__ = ["Settings", "create_app", "serve"]
