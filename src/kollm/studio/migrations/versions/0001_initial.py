"""The initial schema: every table of the Studio.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _app_fk() -> sa.Column:
    return sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table("settings", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table("apps", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("slug", sa.String(64), nullable=False, unique=True),
                    sa.Column("name", sa.String(200), nullable=False),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_table("versions", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("number", sa.Integer, nullable=False), sa.Column("spec", sa.JSON, nullable=False),
                    sa.Column("note", sa.Text, nullable=False), sa.Column("created", sa.Float, nullable=False),
                    sa.UniqueConstraint("app_id", "number"))
    op.create_table("labels",
                    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
                    sa.Column("name", sa.String(32), primary_key=True),
                    sa.Column("version", sa.Integer, nullable=False), sa.Column("moved", sa.Float, nullable=False))
    op.create_table("app_keys", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("name", sa.String(200), nullable=False),
                    sa.Column("prefix", sa.String(16), nullable=False),
                    sa.Column("hash", sa.String(64), nullable=False, unique=True),
                    sa.Column("created", sa.Float, nullable=False), sa.Column("revoked", sa.Boolean, nullable=False))
    op.create_table("usage_logs", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("version", sa.Integer, nullable=False),
                    sa.Column("source", sa.String(16), nullable=False),
                    sa.Column("created", sa.Float, nullable=False), sa.Column("latency_ms", sa.Float, nullable=False),
                    sa.Column("prompt_tokens", sa.Integer, nullable=False),
                    sa.Column("completion_tokens", sa.Integer, nullable=False),
                    sa.Column("input_chars", sa.Integer, nullable=False),
                    sa.Column("output_chars", sa.Integer, nullable=False), sa.Column("error", sa.Text, nullable=False))
    op.create_table("test_sets", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("name", sa.String(200), nullable=False), sa.Column("items", sa.JSON, nullable=False),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_table("test_runs", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("test_set_id", sa.Integer, sa.ForeignKey("test_sets.id", ondelete="CASCADE"),
                              nullable=False, index=True),
                    sa.Column("version", sa.Integer, nullable=False),
                    sa.Column("model", sa.String(200), nullable=False),
                    sa.Column("summary", sa.JSON, nullable=False), sa.Column("results", sa.JSON, nullable=False),
                    sa.Column("created", sa.Float, nullable=False))


def downgrade() -> None:
    for table in ("test_runs", "test_sets", "usage_logs", "app_keys", "labels", "versions", "apps", "settings"):
        op.drop_table(table)
