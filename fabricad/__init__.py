"""fabricad: visual inspection of fabrics and textures with reverse distillation."""

__version__ = "0.1.0"
