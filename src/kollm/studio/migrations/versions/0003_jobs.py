"""Background jobs, feedback on outputs, held-out split and tuned versions (#25).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _app_fk() -> sa.Column:
    return sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table("jobs", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("key", sa.String(300), nullable=False, index=True),
                    sa.Column("status", sa.String(16), nullable=False, index=True),
                    sa.Column("params", sa.JSON, nullable=False),
                    sa.Column("done", sa.Integer, nullable=False), sa.Column("total", sa.Integer, nullable=False),
                    sa.Column("cancel", sa.Boolean, nullable=False), sa.Column("error", sa.Text, nullable=False),
                    sa.Column("note", sa.Text, nullable=False), sa.Column("result", sa.JSON, nullable=False),
                    sa.Column("created", sa.Float, nullable=False), sa.Column("started", sa.Float, nullable=False),
                    sa.Column("progressed", sa.Float, nullable=False),
                    sa.Column("finished", sa.Float, nullable=False))
    op.create_table("feedback", sa.Column("id", sa.Integer, primary_key=True), _app_fk(),
                    sa.Column("source", sa.String(16), nullable=False),
                    sa.Column("run_id", sa.Integer, nullable=True),
                    sa.Column("item_id", sa.String(200), nullable=False),
                    sa.Column("log_id", sa.Integer, nullable=True),
                    sa.Column("version", sa.Integer, nullable=False),
                    sa.Column("inputs", sa.JSON, nullable=False), sa.Column("output", sa.Text, nullable=False),
                    sa.Column("verdict", sa.String(16), nullable=False),
                    sa.Column("corrected", sa.Text, nullable=False), sa.Column("created", sa.Float, nullable=False))


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("jobs")
