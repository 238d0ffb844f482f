"""The built-in procedural Djent dataset (see :mod:`djenerator.synth.djent`)."""
from .djent import BPM_RANGE, GROUPINGS, render_riff, synth_dataset

__all__ = ["render_riff", "synth_dataset", "GROUPINGS", "BPM_RANGE"]
