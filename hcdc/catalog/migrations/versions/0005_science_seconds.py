"""Time a step spent on its science, apart from the pipeline around it.

``reductions.science_seconds`` is the wall time of the step's science call
(``preprocess_observation``, ``postprocess`` of every band), measured in the
kernel that ran it. With ``started_at``/``finished_at`` and the runner's log it
gives the pipeline's overhead per step (kernel, papermill, provenance,
database, report), which instrument monitoring trends and ``bench/`` reports.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reductions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('science_seconds', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reductions', schema=None) as batch_op:
        batch_op.drop_column('science_seconds')
