"""Processing: campaigns, reductions with provenance, products, reduced calibrations, detections, detection limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", "version", name="uq_campaigns_name_version"),
    )
    op.create_table(
        "reductions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("step_version", sa.String(length=32), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("parameters_sha256", sa.String(length=64), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=True),
        sa.Column("git_commit", sa.String(length=40), nullable=True),
        sa.Column("environment_sha256", sa.String(length=64), nullable=True),
        sa.Column("host", sa.String(length=128), nullable=True),
        sa.Column("papermill_run_id", sa.String(length=64), nullable=True),
        sa.Column("notebook_path", sa.String(length=1024), nullable=True),
        sa.Column("report_path", sa.String(length=1024), nullable=True),
        sa.Column("log_path", sa.String(length=1024), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_reductions_campaign_id_campaigns")),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_reductions_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_reductions_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reductions")),
    )
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reductions_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reductions_observation_id"), ["observation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reductions_status"), ["status"], unique=False)

    op.create_table(
        "detection_limits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reduction_id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("sigma", sa.Float(), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=True),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_detection_limits_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reduction_id"],
            ["reductions.id"],
            name=op.f("fk_detection_limits_reduction_id_reductions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_limits")),
    )
    with op.batch_alter_table("detection_limits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detection_limits_observation_id"), ["observation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_detection_limits_reduction_id"), ["reduction_id"], unique=False)

    op.create_table(
        "detections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reduction_id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("x_px", sa.Float(), nullable=False),
        sa.Column("y_px", sa.Float(), nullable=False),
        sa.Column("sep_arcsec", sa.Float(), nullable=False),
        sa.Column("sep_err_arcsec", sa.Float(), nullable=True),
        sa.Column("pa_deg", sa.Float(), nullable=False),
        sa.Column("pa_err_deg", sa.Float(), nullable=True),
        sa.Column("snr", sa.Float(), nullable=False),
        sa.Column("fpf", sa.Float(), nullable=True),
        sa.Column("flux", sa.Float(), nullable=True),
        sa.Column("flux_err", sa.Float(), nullable=True),
        sa.Column("contrast", sa.Float(), nullable=True),
        sa.Column("contrast_err", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_detections_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reduction_id"], ["reductions.id"], name=op.f("fk_detections_reduction_id_reductions"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["target_id"], ["targets.id"], name=op.f("fk_detections_target_id_targets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detections")),
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detections_observation_id"), ["observation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_detections_reduction_id"), ["reduction_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_detections_target_id"), ["target_id"], unique=False)

    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reduction_id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_products_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reduction_id"], ["reductions.id"], name=op.f("fk_products_reduction_id_reductions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_products_observation_id"), ["observation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_products_reduction_id"), ["reduction_id"], unique=False)

    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("night", sa.Date(), nullable=True),
        sa.Column("dit_s", sa.Float(), nullable=True),
        sa.Column("filter", sa.String(length=32), nullable=True),
        sa.Column("date_obs", sa.DateTime(timezone=True), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument"], ["instruments.name"], name=op.f("fk_calibrations_instrument_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_calibrations_product_id_products"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
    )
    with op.batch_alter_table("calibrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calibrations_instrument"), ["instrument"], unique=False)

    op.create_table(
        "detection_limit_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("limit_id", sa.Integer(), nullable=False),
        sa.Column("sep_arcsec", sa.Float(), nullable=False),
        sa.Column("contrast", sa.Float(), nullable=False),
        sa.Column("throughput", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["limit_id"],
            ["detection_limits.id"],
            name=op.f("fk_detection_limit_points_limit_id_detection_limits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_limit_points")),
    )
    with op.batch_alter_table("detection_limit_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detection_limit_points_limit_id"), ["limit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("detection_limit_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_limit_points_limit_id"))

    op.drop_table("detection_limit_points")
    with op.batch_alter_table("calibrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calibrations_instrument"))

    op.drop_table("calibrations")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_products_reduction_id"))
        batch_op.drop_index(batch_op.f("ix_products_observation_id"))

    op.drop_table("products")
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detections_target_id"))
        batch_op.drop_index(batch_op.f("ix_detections_reduction_id"))
        batch_op.drop_index(batch_op.f("ix_detections_observation_id"))

    op.drop_table("detections")
    with op.batch_alter_table("detection_limits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_limits_reduction_id"))
        batch_op.drop_index(batch_op.f("ix_detection_limits_observation_id"))

    op.drop_table("detection_limits")
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reductions_status"))
        batch_op.drop_index(batch_op.f("ix_reductions_observation_id"))
        batch_op.drop_index(batch_op.f("ix_reductions_campaign_id"))

    op.drop_table("reductions")
    op.drop_table("campaigns")
