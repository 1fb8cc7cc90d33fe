"""Campaign membership, step signatures, wavelength of detections and limits (systematic pipeline).

``reductions.signature`` is the sha256 of a step's name, version, parameters
and input hashes: a done reduction with the same signature makes the step up
to date. ``campaign_reductions`` lists the reductions a campaign version is made
of, so a new version reuses unchanged results instead of copying them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("detections", "detection_limits"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("wavelength_um", sa.Float(), nullable=True))
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_reductions_signature"), ["signature"], unique=False)
    op.create_table(
        "campaign_reductions",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("reduction_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_reductions_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reduction_id"],
            ["reductions.id"],
            name=op.f("fk_campaign_reductions_reduction_id_reductions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "reduction_id", name=op.f("pk_campaign_reductions")),
    )
    with op.batch_alter_table("campaign_reductions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaign_reductions_reduction_id"), ["reduction_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # the catalog service's reader role may read memberships (ids only, no data)
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hcdc_reader') THEN "
            "GRANT SELECT ON campaign_reductions TO hcdc_reader; END IF; END $$"
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign_reductions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_reductions_reduction_id"))
    op.drop_table("campaign_reductions")
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reductions_signature"))
        batch_op.drop_column("signature")
    for table in ("detections", "detection_limits"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("wavelength_um")
