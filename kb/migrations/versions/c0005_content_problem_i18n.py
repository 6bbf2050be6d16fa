"""content problems keep their message's msgid and parameters (shown in the reader's language)

Revision ID: c0005
Revises: c0004
Create Date: 2026-12-04 02:40:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = 'c0005'
down_revision = 'c0004'
branch_labels = None
depends_on = None


def upgrade():
    # Rows written before keep their (English) text and are shown as stored; the next
    # `kb sync` of a changed file rewrites them.
    with op.batch_alter_table('content_problem', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_i18n', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('content_problem', schema=None) as batch_op:
        batch_op.drop_column('message_i18n')
