"""The fabricad inspection service: FastAPI app, model registry, defect log (see app.py)."""
