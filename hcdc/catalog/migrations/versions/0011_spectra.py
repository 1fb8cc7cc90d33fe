"""Companion spectra (IFS): one row per detection and channel.

``spectra``: the contrast of a detection to the star in each wavelength channel of an IFS cube, with its
error and S/N (``reduction.postproc.spectral``). On PostgreSQL a row is visible exactly when its
detection is (the child policy of 0003's scheme) and the catalog service's reader role may read it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROLE = "hcdc_reader"
CONDITION = "EXISTS (SELECT 1 FROM detections d WHERE d.id = spectra.detection_id)"


def upgrade() -> None:
    op.create_table(
        "spectra",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("wavelength_um", sa.Float(), nullable=False),
        sa.Column("contrast", sa.Float(), nullable=True),
        sa.Column("contrast_err", sa.Float(), nullable=True),
        sa.Column("snr", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["detection_id"], ["detections.id"], name=op.f("fk_spectra_detection_id_detections"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spectra")),
    )
    with op.batch_alter_table("spectra", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spectra_detection_id"), ["detection_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE spectra ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN "
            f"GRANT SELECT ON spectra TO {ROLE}; "
            f"CREATE POLICY hcdc_read ON spectra FOR SELECT TO {ROLE} USING ({CONDITION}); END IF; END $$"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS hcdc_read ON spectra")
    with op.batch_alter_table("spectra", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spectra_detection_id"))
    op.drop_table("spectra")
