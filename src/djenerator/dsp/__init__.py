"""Signal processing that both data preparation and evaluation use (numpy, scipy and torch tensors; no models)."""
