"""Evaluation: metrics as pure functions (features, distances, noise, rhythm, memorisation) plus the report."""
