from fabricad.models.rd.torch_model import ReverseDistillation

__all__ = ["ReverseDistillation"]
