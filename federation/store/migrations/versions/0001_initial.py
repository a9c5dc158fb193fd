"""Initial schema: meta, records, changes, leases (see federation/store/sql_schema.py)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meshfed_meta",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("compact_revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        sa.table(
            "meshfed_meta",
            sa.column("id", sa.Integer),
            sa.column("revision", sa.BigInteger),
            sa.column("compact_revision", sa.BigInteger),
        ),
        [{"id": 1, "revision": 1, "compact_revision": 0}],
    )
    op.create_table(
        "meshfed_records",
        sa.Column("key", sa.LargeBinary, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("create_revision", sa.BigInteger, nullable=False),
        sa.Column("mod_revision", sa.BigInteger, nullable=False),
        sa.Column("lease", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_meshfed_records_lease", "meshfed_records", ["lease"])
    op.create_table(
        "meshfed_changes",
        sa.Column("revision", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("op", sa.String(6), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "meshfed_leases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_meshfed_leases_expires_at", "meshfed_leases", ["expires_at"])


def downgrade() -> None:
    op.drop_table("meshfed_leases")
    op.drop_table("meshfed_changes")
    op.drop_table("meshfed_records")
    op.drop_table("meshfed_meta")
