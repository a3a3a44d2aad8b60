"""Alembic environment: always run programmatically with a connection from `flowengine.store.database`."""

from __future__ import annotations

from alembic import context

from flowengine.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table="fe_alembic_version",
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
