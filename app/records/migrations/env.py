"""Alembic's entry point. The service passes its connection in (``database.migrate``); the
``alembic`` command line can use ``-x url=...`` instead."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from app.records.database import connect
from app.records.schema import metadata

MIGRATION_LOCK = 72_0414  # any constant: replicas migrating at once take this advisory lock in turn


def run_migrations(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # type: ignore[attr-defined]
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))  # type: ignore[attr-defined]
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    with connect(context.get_x_argument(as_dictionary=True)["url"]).begin() as connection:
        run_migrations(connection)
