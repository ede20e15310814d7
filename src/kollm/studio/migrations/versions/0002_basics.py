"""The missing basics: app archive, server-side sessions, login throttling, roles (#25).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


_settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
_users = sa.table("users", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("password", sa.String),
                  sa.column("role", sa.String), sa.column("created", sa.Float))
_LOG_COLUMNS = ("user_id", "model", "inputs", "prompt", "output")


def upgrade() -> None:
    op.create_table("users", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(32), nullable=False, unique=True),
                    sa.Column("password", sa.String(200), nullable=False),
                    sa.Column("role", sa.String(16), nullable=False),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_table("sessions", sa.Column("id", sa.String(64), primary_key=True),
                    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True,
                              index=True),
                    sa.Column("data", sa.JSON, nullable=False), sa.Column("created", sa.Float, nullable=False),
                    sa.Column("seen", sa.Float, nullable=False),
                    sa.Column("expires", sa.Float, nullable=False, index=True),
                    sa.Column("address", sa.String(64), nullable=False),
                    sa.Column("agent", sa.String(200), nullable=False))
    # the one admin of 0001 becomes the user "admin" (same password); its old signed-cookie sessions end
    conn = op.get_bind()
    stored = conn.execute(sa.select(_settings.c.value).where(_settings.c.key == "admin_password")).scalar()
    if stored is not None:
        conn.execute(_users.insert().values(name="admin", password=stored, role="admin", created=time.time()))
        conn.execute(_settings.delete().where(_settings.c.key == "admin_password"))
    op.add_column("apps", sa.Column("archived", sa.Float, nullable=True))
    op.add_column("usage_logs", sa.Column("user_id", sa.Integer, nullable=True))
    op.add_column("usage_logs", sa.Column("model", sa.String(200), nullable=False, server_default=""))
    op.add_column("usage_logs", sa.Column("inputs", sa.JSON, nullable=True))
    op.add_column("usage_logs", sa.Column("prompt", sa.Text, nullable=True))
    op.add_column("usage_logs", sa.Column("output", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_logs") as b:  # SQLite drops columns by copying the table
        for col in _LOG_COLUMNS:
            b.drop_column(col)
    with op.batch_alter_table("apps") as b:
        b.drop_column("archived")
    conn = op.get_bind()
    admin = conn.execute(sa.select(_users.c.password).where(_users.c.role == "admin").order_by(_users.c.id)).first()
    if admin is not None:
        conn.execute(_settings.insert().values(key="admin_password", value=admin[0]))
    op.drop_table("sessions")
    op.drop_table("users")
