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
