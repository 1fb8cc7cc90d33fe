"""Each term of a detection's error budget in its own column, how its star centre was found, and a note.

``sep_err_arcsec``, ``pa_err_deg`` and ``contrast_err`` stay the totals (the quadrature sum of the
terms, :mod:`reduction.postproc.budget`); the new columns hold the terms: the NEGFC fit, the speckle
noise, the star centre and the instrument calibration for separations and angles; the fit, the speckle
noise and the star's photometry for contrasts. ``centre_status`` says how the star centre was found
(``waffle``, ``centre-from-header``, ``coronagraph-core``, ``fitted``, ``given``); ``note`` why a
candidate has no fit. Rows written before have NULL terms: their totals were fit and speckle only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: the new float columns, in table order
TERMS = (
    "sep_err_fit_arcsec",
    "sep_err_speckle_arcsec",
    "sep_err_centre_arcsec",
    "sep_err_calibration_arcsec",
    "pa_err_fit_deg",
    "pa_err_speckle_deg",
    "pa_err_centre_deg",
    "pa_err_calibration_deg",
    "contrast_err_fit",
    "contrast_err_speckle",
    "contrast_err_photometry",
)


def upgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        for name in TERMS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("centre_status", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("note", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("centre_status")
        for name in reversed(TERMS):
            batch_op.drop_column(name)
