"""djenerator: GANs on raw audio."""
__version__ = "0.1.0"
