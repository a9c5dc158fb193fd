"""Tables of the SQL backends (SQLite and PostgreSQL), shared by queries and migrations.

The layout emulates etcd's MVCC on a relational database:

- `meta` is a single row holding the store revision and the compaction point. Every
  writer locks it first (`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE`
  on SQLite), so revisions are assigned and become visible in commit order: a
  reader that sees revision N also sees every revision below it (no gaps).
- `records` holds the live keys with their create/mod revisions and lease.
- `changes` is the change log the feed replays: one row per key event, ordered by
  (revision, seq). Compaction deletes old rows.
- `leases` holds lease deadlines as Unix seconds.

Keys are stored as bytes so range scans order by byte value on both databases,
independent of collation (PostgreSQL's default collation would not).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

meta = Table(
    "meshfed_meta",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("compact_revision", BigInteger, nullable=False),
)

records = Table(
    "meshfed_records",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("create_revision", BigInteger, nullable=False),
    Column("mod_revision", BigInteger, nullable=False),
    Column("lease", BigInteger, nullable=False, default=0),
    Index("ix_meshfed_records_lease", "lease"),
)

changes = Table(
    "meshfed_changes",
    metadata,
    Column("revision", BigInteger, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("op", String(6), nullable=False),  # "put" | "delete"
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=True),
)

leases = Table(
    "meshfed_leases",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ttl", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_meshfed_leases_expires_at", "expires_at"),
)
