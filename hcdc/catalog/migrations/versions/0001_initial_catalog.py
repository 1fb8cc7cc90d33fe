"""Archive: instruments, users, programmes, targets, observations, raw files, calibration links.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=1024), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("n_seen", sa.Integer(), nullable=False),
        sa.Column("n_new", sa.Integer(), nullable=False),
        sa.Column("n_updated", sa.Integer(), nullable=False),
        sa.Column("n_unchanged", sa.Integer(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.Column("n_observations_changed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_runs")),
    )
    op.create_table(
        "instruments",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("telescope", sa.String(length=32), nullable=False),
        sa.Column("pixel_scale_mas", sa.Float(), nullable=False),
        sa.Column("site_latitude_deg", sa.Float(), nullable=False),
        sa.Column("site_longitude_deg", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instruments")),
    )
    op.create_table(
        "programmes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prog_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("pi_name", sa.String(length=128), nullable=True),
        sa.Column("proprietary_months", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programmes")),
        sa.UniqueConstraint("prog_id", name=op.f("uq_programmes_prog_id")),
    )
    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ra_deg", sa.Float(), nullable=True),
        sa.Column("dec_deg", sa.Float(), nullable=True),
        sa.Column("pm_ra_mas_yr", sa.Float(), nullable=True),
        sa.Column("pm_dec_mas_yr", sa.Float(), nullable=True),
        sa.Column("parallax_mas", sa.Float(), nullable=True),
        sa.Column("parallax_err_mas", sa.Float(), nullable=True),
        sa.Column("spectral_type", sa.String(length=32), nullable=True),
        sa.Column("age_myr", sa.Float(), nullable=True),
        sa.Column("age_err_myr", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targets")),
        sa.UniqueConstraint("name", name=op.f("uq_targets_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=128), nullable=True),
        sa.Column("email", sa.String(length=128), nullable=True),
        sa.Column("is_staff", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("night", sa.Date(), nullable=False),
        sa.Column("ob_id", sa.BigInteger(), nullable=True),
        sa.Column("ob_name", sa.String(length=128), nullable=True),
        sa.Column("mode", sa.String(length=32), nullable=True),
        sa.Column("filter", sa.String(length=32), nullable=True),
        sa.Column("coronagraph", sa.String(length=32), nullable=True),
        sa.Column("dit_s", sa.Float(), nullable=True),
        sa.Column("date_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("date_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("n_science_files", sa.Integer(), nullable=False),
        sa.Column("n_center_files", sa.Integer(), nullable=False),
        sa.Column("n_flux_files", sa.Integer(), nullable=False),
        sa.Column("n_science_frames", sa.Integer(), nullable=False),
        sa.Column("exposure_time_s", sa.Float(), nullable=True),
        sa.Column("parang_start_deg", sa.Float(), nullable=True),
        sa.Column("parang_end_deg", sa.Float(), nullable=True),
        sa.Column("field_rotation_deg", sa.Float(), nullable=True),
        sa.Column("seeing_arcsec", sa.Float(), nullable=True),
        sa.Column("tau0_ms", sa.Float(), nullable=True),
        sa.Column("airmass", sa.Float(), nullable=True),
        sa.Column("wind_speed_ms", sa.Float(), nullable=True),
        sa.Column("pixel_scale_arcsec", sa.Float(), nullable=True),
        sa.Column("release_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("external", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument"], ["instruments.name"], name=op.f("fk_observations_instrument_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name=op.f("fk_observations_programme_id_programmes")
        ),
        sa.ForeignKeyConstraint(["target_id"], ["targets.id"], name=op.f("fk_observations_target_id_targets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.UniqueConstraint("key", name=op.f("uq_observations_key")),
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_observations_instrument"), ["instrument"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_night"), ["night"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_programme_id"), ["programme_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_release_date"), ["release_date"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_target_id"), ["target_id"], unique=False)

    op.create_table(
        "programme_members",
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name=op.f("fk_programme_members_programme_id_programmes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_programme_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("programme_id", "user_id", name=op.f("pk_programme_members")),
    )
    op.create_table(
        "target_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("normalized", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"], name=op.f("fk_target_aliases_target_id_targets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target_aliases")),
        sa.UniqueConstraint("normalized", name=op.f("uq_target_aliases_normalized")),
    )
    with op.batch_alter_table("target_aliases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_target_aliases_target_id"), ["target_id"], unique=False)

    op.create_table(
        "target_magnitudes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("mag", sa.Float(), nullable=False),
        sa.Column("mag_err", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"], name=op.f("fk_target_magnitudes_target_id_targets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target_magnitudes")),
        sa.UniqueConstraint("target_id", "band", name="uq_target_magnitudes_target_band"),
    )
    op.create_table(
        "raw_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("reject_keyword", sa.String(length=80), nullable=True),
        sa.Column("instrument", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("dpr_catg", sa.String(length=32), nullable=True),
        sa.Column("dpr_type", sa.String(length=48), nullable=True),
        sa.Column("dpr_tech", sa.String(length=64), nullable=True),
        sa.Column("date_obs", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mjd_obs", sa.Float(), nullable=True),
        sa.Column("night", sa.Date(), nullable=True),
        sa.Column("dit_s", sa.Float(), nullable=True),
        sa.Column("ndit", sa.Integer(), nullable=True),
        sa.Column("n_frames", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("programme", sa.String(length=32), nullable=True),
        sa.Column("ob_id", sa.BigInteger(), nullable=True),
        sa.Column("ob_name", sa.String(length=128), nullable=True),
        sa.Column("template_start", sa.String(length=32), nullable=True),
        sa.Column("mode", sa.String(length=32), nullable=True),
        sa.Column("filter", sa.String(length=32), nullable=True),
        sa.Column("coronagraph", sa.String(length=32), nullable=True),
        sa.Column("header", sa.JSON(), nullable=True),
        sa.Column("release_date", sa.Date(), nullable=True),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["instrument"], ["instruments.name"], name=op.f("fk_raw_files_instrument_instruments")),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_raw_files_observation_id_observations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_files")),
        sa.UniqueConstraint("path", name=op.f("uq_raw_files_path")),
    )
    with op.batch_alter_table("raw_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raw_files_date_obs"), ["date_obs"], unique=False)
        batch_op.create_index("ix_raw_files_match", ["instrument", "kind", "dit_s"], unique=False)
        batch_op.create_index(batch_op.f("ix_raw_files_night"), ["night"], unique=False)
        batch_op.create_index(batch_op.f("ix_raw_files_observation_id"), ["observation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_raw_files_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_raw_files_status"), ["status"], unique=False)

    op.create_table(
        "observation_calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("raw_file_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("for_dit_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_observation_calibrations_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["raw_file_id"],
            ["raw_files.id"],
            name=op.f("fk_observation_calibrations_raw_file_id_raw_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_calibrations")),
        sa.UniqueConstraint(
            "observation_id", "raw_file_id", "role", "for_dit_s", name="uq_observation_calibrations_link"
        ),
    )
    with op.batch_alter_table("observation_calibrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_observation_calibrations_observation_id"), ["observation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_observation_calibrations_raw_file_id"), ["raw_file_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("observation_calibrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_observation_calibrations_raw_file_id"))
        batch_op.drop_index(batch_op.f("ix_observation_calibrations_observation_id"))

    op.drop_table("observation_calibrations")
    with op.batch_alter_table("raw_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raw_files_status"))
        batch_op.drop_index(batch_op.f("ix_raw_files_sha256"))
        batch_op.drop_index(batch_op.f("ix_raw_files_observation_id"))
        batch_op.drop_index(batch_op.f("ix_raw_files_night"))
        batch_op.drop_index("ix_raw_files_match")
        batch_op.drop_index(batch_op.f("ix_raw_files_date_obs"))

    op.drop_table("raw_files")
    op.drop_table("target_magnitudes")
    with op.batch_alter_table("target_aliases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_target_aliases_target_id"))

    op.drop_table("target_aliases")
    op.drop_table("programme_members")
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_observations_target_id"))
        batch_op.drop_index(batch_op.f("ix_observations_release_date"))
        batch_op.drop_index(batch_op.f("ix_observations_programme_id"))
        batch_op.drop_index(batch_op.f("ix_observations_night"))
        batch_op.drop_index(batch_op.f("ix_observations_instrument"))

    op.drop_table("observations")
    op.drop_table("users")
    op.drop_table("targets")
    op.drop_table("programmes")
    op.drop_table("instruments")
    op.drop_table("ingest_runs")
