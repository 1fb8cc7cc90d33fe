"""Which algorithms found a detection (multi-algorithm post-processing).

``detections.found_by``: the algorithms whose own detection map finds the candidate within one FWHM,
'+'-separated, the reduction's main algorithm first when it does (``PostprocessParameters.confirm_with``);
NULL when one algorithm ran. The detection limits of each algorithm are rows of ``detection_limits``
with their ``algorithm``, as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("found_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_column("found_by")
