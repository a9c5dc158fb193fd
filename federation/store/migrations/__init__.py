"""Alembic migrations of the SQL store schema (run by `SqlBackend.open`)."""
