"""Sources across epochs: detections linked into sources, published astrometry, the star's motion errors and mass.

``sources`` holds one row per point source around a target (no measurement, no verdict: the
common-proper-motion status is computed from the epochs the viewer may see, :mod:`hcdc.sources`);
``detections.source_id`` links each detection to its source; ``external_detections`` holds relative
astrometry published elsewhere (``hcdc register-astrometry``); ``targets`` gains the proper-motion errors
and the star's mass the test needs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TARGET_COLUMNS = ("pm_ra_err_mas_yr", "pm_dec_err_mas_yr", "mass_msun")


def upgrade() -> None:
    with op.batch_alter_table("targets", schema=None) as batch_op:
        for name in TARGET_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("known_name", sa.String(length=64), nullable=True),
        sa.Column("known_note", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"], name=op.f("fk_sources_target_id_targets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
    )
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sources_target_id"), ["target_id"], unique=False)
    op.create_table(
        "external_detections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("epoch_mjd", sa.Float(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sep_arcsec", sa.Float(), nullable=False),
        sa.Column("sep_err_arcsec", sa.Float(), nullable=False),
        sa.Column("pa_deg", sa.Float(), nullable=False),
        sa.Column("pa_err_deg", sa.Float(), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_external_detections_source_id_sources"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"], name=op.f("fk_external_detections_target_id_targets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_detections")),
        sa.UniqueConstraint(
            "target_id", "epoch_mjd", "reference", "object_name", "seq", name="uq_external_detections_epoch"
        ),
    )
    with op.batch_alter_table("external_detections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_external_detections_source_id"), ["source_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_external_detections_target_id"), ["target_id"], unique=False)
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_detections_source_id"), ["source_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_detections_source_id_sources"), "sources", ["source_id"], ["id"], ondelete="SET NULL"
        )
    if op.get_bind().dialect.name == "postgresql":
        # the catalog service's reader role reads both; what it shows of them follows the detections' rule
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hcdc_reader') THEN "
            "GRANT SELECT ON sources, external_detections TO hcdc_reader; END IF; END $$"
        )


def downgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_detections_source_id_sources"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_detections_source_id"))
        batch_op.drop_column("source_id")
    with op.batch_alter_table("external_detections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_external_detections_target_id"))
        batch_op.drop_index(batch_op.f("ix_external_detections_source_id"))
    op.drop_table("external_detections")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sources_target_id"))
    op.drop_table("sources")
    with op.batch_alter_table("targets", schema=None) as batch_op:
        for name in reversed(TARGET_COLUMNS):
            batch_op.drop_column(name)
