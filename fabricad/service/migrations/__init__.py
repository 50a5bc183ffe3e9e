"""Alembic migrations of the service's database (`fabricad.service.database` runs them)."""
