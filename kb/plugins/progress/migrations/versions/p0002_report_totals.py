"""progress: report totals (学时 per person and year, lessons done per person and course)

Revision ID: p0002
Revises: p0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'p0002'
down_revision = 'p0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('progress_user_year',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_progress_user_year_user_id_user')),
    sa.PrimaryKeyConstraint('user_id', 'year', name=op.f('pk_progress_user_year'))
    )
    op.create_table('progress_course_done',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('course_slug', sa.String(length=100), nullable=False),
    sa.Column('lessons', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_progress_course_done_user_id_user')),
    sa.PrimaryKeyConstraint('user_id', 'course_slug', name=op.f('pk_progress_course_done'))
    )
    # Fill them from existing rows (databases that ran p0001 before these tables existed).
    op.execute("INSERT INTO progress_user_year (user_id, year, hours) "
               "SELECT user_id, year, SUM(hours) FROM progress_ledger GROUP BY user_id, year")
    op.execute("INSERT INTO progress_course_done (user_id, course_slug, lessons) "
               "SELECT user_id, course_slug, COUNT(*) FROM progress_lesson "
               "WHERE completed_at IS NOT NULL GROUP BY user_id, course_slug")


def downgrade():
    op.drop_table('progress_course_done')
    op.drop_table('progress_user_year')
