"""Alembic environment for the Studio: online migrations on the URL `kollm.studio.db.migrate` configured."""

from __future__ import annotations

from alembic import context

from kollm.studio.db import Base, make_engine

url = context.config.get_main_option("sqlalchemy.url")
connectable = make_engine(url)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=url.startswith("sqlite"))  # SQLite alters tables by copying them
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
