"""Inference: backends, the engine and threshold calibration (import from submodules)."""
