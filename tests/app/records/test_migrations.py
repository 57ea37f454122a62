"""The Alembic migrations build exactly the tables app.records.schema describes, on SQLite and
PostgreSQL, and running them twice (a second replica starting) changes nothing."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pg_cluster import available, running_cluster
from sqlalchemy import inspect

from app.records.database import connect, migrate
from app.records.schema import metadata


def assert_schema_matches(url: str) -> None:
    engine = connect(url)
    migrate(engine)
    migrate(engine)  # already at head: a no-op
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        assert set(inspect(connection).get_table_names()) == {"alembic_version", *metadata.tables}
    engine.dispose()


def test_sqlite_schema_is_the_declared_one(tmp_path):
    assert_schema_matches(f"sqlite:///{tmp_path / 'decisions.db'}")


@pytest.mark.skipif(not available(), reason="PostgreSQL binaries not installed (apt-get install postgresql)")
def test_postgresql_schema_is_the_declared_one():
    with running_cluster() as cluster:
        assert_schema_matches(cluster.url)
