"""The service's memory: every decision on record (``log``), in a database reached through
SQLAlchemy (``database``, ``schema``, Alembic ``migrations``), with an fsync'd local ``spool`` for
the time the database is unreachable."""
