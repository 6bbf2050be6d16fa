"""Alembic environment: run by kb.dbmigrate with the app's connection and metadata."""

from alembic import context

config = context.config
connection = config.attributes["connection"]
target_metadata = config.attributes["metadata"]

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=True,  # ALTER TABLE through copy-and-move on SQLite
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
