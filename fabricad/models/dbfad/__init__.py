from fabricad.models.dbfad.torch_model import DBFAD

__all__ = ["DBFAD"]
