"""Schema migrations: empty -> every revision -> head equals the models; and back down."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hcdc.catalog.db import alembic_config, current_revision, downgrade, head_revision, make_engine, upgrade
from hcdc.catalog.models import Base


def test_upgrade_through_every_revision_then_down(catalog_url):
    script = ScriptDirectory.from_config(alembic_config(catalog_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[0] == "0001" and revisions[-1] == head_revision()
    engine = make_engine(catalog_url)
    seen_tables: set[str] = set()
    for revision in revisions:
        upgrade(catalog_url, revision)
        assert current_revision(engine) == revision
        tables = set(sa.inspect(engine).get_table_names())
        assert seen_tables <= tables, f"revision {revision} dropped tables"
        seen_tables = tables
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    downgrade(catalog_url, "base")
    engine.dispose()
    engine = make_engine(catalog_url)
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_catalog_opens_at_head(catalog):
    assert current_revision(catalog.engine) == head_revision()


def test_0005_moves_calibration_fingerprints_into_their_column(catalog_url):
    """Calibrations recorded before 0005 keep being found by their inputs after the upgrade."""
    upgrade(catalog_url, "0004")
    engine = make_engine(catalog_url)
    with engine.begin() as connection:
        if not connection.execute(sa.text("SELECT count(*) FROM instruments WHERE name = 'SPHERE-IRDIS'")).scalar():
            connection.execute(sa.text("INSERT INTO instruments (name, telescope, pixel_scale_mas, "
                                       "site_latitude_deg, site_longitude_deg) "
                                       "VALUES ('SPHERE-IRDIS', 'VLT-UT3', 12.25, -24.6, -70.4)"))
        connection.execute(sa.text("INSERT INTO calibrations (instrument, kind, quality, created_at) VALUES "
                                   "('SPHERE-IRDIS', 'master_dark', :q, CURRENT_TIMESTAMP)"),
                           {"q": '{"dark_level_adu": 1000.0, "inputs_sha256": "' + "ab" * 32 + '"}'})
        connection.execute(sa.text("INSERT INTO calibrations (instrument, kind, quality, created_at) VALUES "
                                   "('SPHERE-IRDIS', 'master_flat', NULL, CURRENT_TIMESTAMP)"))
    engine.dispose()
    upgrade(catalog_url, "0005")
    engine = make_engine(catalog_url)
    with engine.connect() as connection:
        rows = dict(connection.execute(sa.text("SELECT kind, inputs_sha256 FROM calibrations")).all())
    engine.dispose()
    assert rows == {"master_dark": "ab" * 32, "master_flat": None}
