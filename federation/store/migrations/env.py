"""Alembic environment: migrations run on a connection handed over by SqlBackend."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("meshfed migrations run through SqlBackend.open, not the alembic CLI")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
