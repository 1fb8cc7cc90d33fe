"""Science time of a step; calibrations found by their inputs.

``reductions.science_seconds`` is the wall time of the step's science
(``preprocess_observation``, ``postprocess`` of every band, and writing their
products, as a plain script would), measured in the kernel that ran it. With ``started_at``/``finished_at`` and the runner's log it
gives the pipeline's overhead per step (kernel, papermill, provenance,
database, report), which instrument monitoring trends and ``bench/`` reports.

``calibrations.inputs_sha256`` (indexed; it was only in the ``quality`` JSON)
finds the reduced calibration already made from the same raw files without
reading every calibration of the instrument: the pre-processing of each
observation asks, and an archive holds thousands of them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("science_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("calibrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inputs_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_calibrations_inputs_sha256"), ["inputs_sha256"], unique=False)
    # existing rows: the fingerprint was kept in the quality JSON
    calibrations = sa.table(
        "calibrations",
        sa.column("id", sa.Integer),
        sa.column("quality", sa.JSON),
        sa.column("inputs_sha256", sa.String),
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(calibrations.c.id, calibrations.c.quality)).all():
        fingerprint = (row.quality or {}).get("inputs_sha256")
        if fingerprint:
            bind.execute(calibrations.update().where(calibrations.c.id == row.id).values(inputs_sha256=fingerprint))


def downgrade() -> None:
    with op.batch_alter_table("calibrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calibrations_inputs_sha256"))
        batch_op.drop_column("inputs_sha256")
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.drop_column("science_seconds")
