"""Alembic's entry point: run the migrations on the engine `Database` hands over (there is no
alembic.ini; `fabricad.service.database.alembic_config` is the configuration)."""

from alembic import context

from fabricad.service import records
from fabricad.service.database import Base

assert records  # the tables register themselves on Base.metadata when records is imported


def run_migrations() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        raise RuntimeError("run the migrations through fabricad.service.database.Database (no alembic.ini)")
    with engine.connect() as connection:
        # render_as_batch: SQLite alters a table by copying it; Alembic's batch mode does that.
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
