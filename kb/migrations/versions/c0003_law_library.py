"""law library

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-29 18:53:09.550671
"""
from alembic import op
import sqlalchemy as sa


revision = 'c0003'
down_revision = 'c0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('law',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('category', sa.String(length=100), nullable=False),
    sa.Column('version_date', sa.Date(), nullable=True),
    sa.Column('history', sa.JSON(), nullable=False),
    sa.Column('preamble', sa.JSON(), nullable=False),
    sa.Column('chapters', sa.JSON(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('source_name', sa.String(length=500), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('imported_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_law')),
    sa.UniqueConstraint('slug', 'version_date', name=op.f('uq_law_slug_version_date'))
    )
    with op.batch_alter_table('law', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_law_is_current'), ['is_current'], unique=False)
        batch_op.create_index(batch_op.f('ix_law_slug'), ['slug'], unique=False)

    op.create_table('law_article',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('law_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=32), nullable=False),
    sa.Column('chapter', sa.String(length=200), nullable=False),
    sa.Column('section', sa.String(length=200), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['law_id'], ['law.id'], name=op.f('fk_law_article_law_id_law')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_law_article')),
    sa.UniqueConstraint('law_id', 'number', name=op.f('uq_law_article_law_id_number'))
    )
    with op.batch_alter_table('law_article', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_law_article_law_id'), ['law_id'], unique=False)



def downgrade():
    with op.batch_alter_table('law_article', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_law_article_law_id'))

    op.drop_table('law_article')
    with op.batch_alter_table('law', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_law_slug'))
        batch_op.drop_index(batch_op.f('ix_law_is_current'))

    op.drop_table('law')
