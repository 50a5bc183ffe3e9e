"""fabricad: visual inspection of fabrics and textures with reverse distillation."""

__version__ = "0.1.0"
__all__ = ["Inspector", "__version__"]


def __getattr__(name: str):
    """`from fabricad import Inspector` without `import fabricad` loading ONNX Runtime (the CLI
    imports this package first and must start fast)."""
    if name == "Inspector":
        from fabricad.inference.inspector import Inspector

        return Inspector
    raise AttributeError(f"module 'fabricad' has no attribute {name!r}")
