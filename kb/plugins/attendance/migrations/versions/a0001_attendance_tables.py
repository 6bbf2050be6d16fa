"""Attendance plugin tables: classes, sessions, enrolments, records, leave, mark log.

Revision ID: a0001
Revises: (first revision of the attendance branch)
Create Date: 2026-11-29 18:53:28.648825
"""
from alembic import op
import sqlalchemy as sa


revision = 'a0001'
down_revision = None
branch_labels = ('attendance',)
depends_on = 'c0002'


def upgrade():
    op.create_table('attendance_class',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('org_unit_id', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['user.id'], name=op.f('fk_attendance_class_created_by_user')),
    sa.ForeignKeyConstraint(['org_unit_id'], ['org_unit.id'], name=op.f('fk_attendance_class_org_unit_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_class'))
    )
    with op.batch_alter_table('attendance_class', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_class_org_unit_id'), ['org_unit_id'], unique=False)

    op.create_table('attendance_enrolment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['class_id'], ['attendance_class.id'], name=op.f('fk_attendance_enrolment_class_id_attendance_class')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_attendance_enrolment_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_enrolment')),
    sa.UniqueConstraint('class_id', 'user_id', name='uq_attendance_enrolment')
    )
    with op.batch_alter_table('attendance_enrolment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_enrolment_class_id'), ['class_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_enrolment_user_id'), ['user_id'], unique=False)

    op.create_table('attendance_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=False),
    sa.Column('place', sa.String(length=200), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['class_id'], ['attendance_class.id'], name=op.f('fk_attendance_session_class_id_attendance_class')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_session'))
    )
    with op.batch_alter_table('attendance_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_session_class_id'), ['class_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_session_ends_at'), ['ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_session_starts_at'), ['starts_at'], unique=False)

    op.create_table('attendance_leave',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by'], ['user.id'], name=op.f('fk_attendance_leave_decided_by_user')),
    sa.ForeignKeyConstraint(['session_id'], ['attendance_session.id'], name=op.f('fk_attendance_leave_session_id_attendance_session')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_attendance_leave_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_leave')),
    sa.UniqueConstraint('session_id', 'user_id', name='uq_attendance_leave')
    )
    with op.batch_alter_table('attendance_leave', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_leave_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_leave_user_id'), ['user_id'], unique=False)

    op.create_table('attendance_mark_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('old_status', sa.String(length=16), nullable=True),
    sa.Column('new_status', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['user.id'], name=op.f('fk_attendance_mark_log_actor_id_user')),
    sa.ForeignKeyConstraint(['session_id'], ['attendance_session.id'], name=op.f('fk_attendance_mark_log_session_id_attendance_session')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_attendance_mark_log_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_mark_log'))
    )
    with op.batch_alter_table('attendance_mark_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_mark_log_session_id'), ['session_id'], unique=False)

    op.create_table('attendance_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['attendance_session.id'], name=op.f('fk_attendance_record_session_id_attendance_session')),
    sa.ForeignKeyConstraint(['updated_by'], ['user.id'], name=op.f('fk_attendance_record_updated_by_user')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_attendance_record_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance_record')),
    sa.UniqueConstraint('session_id', 'device_id', name='uq_attendance_record_device'),
    sa.UniqueConstraint('session_id', 'user_id', name='uq_attendance_record_user')
    )
    with op.batch_alter_table('attendance_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_record_session_id'), ['session_id'], unique=False)
        batch_op.create_index('ix_attendance_record_user_status', ['user_id', 'status'], unique=False)


def downgrade():
    for table, indexes in (
        ("attendance_record", ("ix_attendance_record_user_status", "ix_attendance_record_session_id")),
        ("attendance_mark_log", ("ix_attendance_mark_log_session_id",)),
        ("attendance_leave", ("ix_attendance_leave_user_id", "ix_attendance_leave_session_id")),
        ("attendance_session", ("ix_attendance_session_starts_at", "ix_attendance_session_ends_at",
                                "ix_attendance_session_class_id")),
        ("attendance_enrolment", ("ix_attendance_enrolment_user_id", "ix_attendance_enrolment_class_id")),
        ("attendance_class", ("ix_attendance_class_org_unit_id",)),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in indexes:
                batch_op.drop_index(index)
        op.drop_table(table)
