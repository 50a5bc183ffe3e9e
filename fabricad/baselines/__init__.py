from fabricad.baselines.patchcore import PatchCore

__all__ = ["PatchCore"]
