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
            connection.execute(
                sa.text(
                    "INSERT INTO instruments (name, telescope, pixel_scale_mas, "
                    "site_latitude_deg, site_longitude_deg) "
                    "VALUES ('SPHERE-IRDIS', 'VLT-UT3', 12.25, -24.6, -70.4)"
                )
            )
        connection.execute(
            sa.text(
                "INSERT INTO calibrations (instrument, kind, quality, created_at) VALUES "
                "('SPHERE-IRDIS', 'master_dark', :q, CURRENT_TIMESTAMP)"
            ),
            {"q": '{"dark_level_adu": 1000.0, "inputs_sha256": "' + "ab" * 32 + '"}'},
        )
        connection.execute(
            sa.text(
                "INSERT INTO calibrations (instrument, kind, quality, created_at) VALUES "
                "('SPHERE-IRDIS', 'master_flat', NULL, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    upgrade(catalog_url, "0005")
    engine = make_engine(catalog_url)
    with engine.connect() as connection:
        rows = dict(connection.execute(sa.text("SELECT kind, inputs_sha256 FROM calibrations")).all())
    engine.dispose()
    assert rows == {"master_dark": "ab" * 32, "master_flat": None}


def test_0006_makes_reduced_calibrations_public(catalog_url):
    """Calibration products written without a release date get the date of their frames (else creation)."""
    from datetime import date

    from hcdc import access

    upgrade(catalog_url, "0005")
    engine = make_engine(catalog_url)
    with engine.begin() as connection:
        if not connection.execute(sa.text("SELECT count(*) FROM instruments WHERE name = 'SPHERE-IRDIS'")).scalar():
            connection.execute(
                sa.text(
                    "INSERT INTO instruments (name, telescope, pixel_scale_mas, "
                    "site_latitude_deg, site_longitude_deg) "
                    "VALUES ('SPHERE-IRDIS', 'VLT-UT3', 12.25, -24.6, -70.4)"
                )
            )
        reduction = connection.execute(
            sa.text(
                "INSERT INTO reductions (step, step_version, parameters, inputs, status, attempts) VALUES "
                "('preprocess', '1', '{}', '[]', 'done', 1) RETURNING id"
            )
        ).scalar()
        for kind, date_obs in (("master_dark", "2019-03-04 09:10:00"), ("master_flat", None)):
            product = connection.execute(
                sa.text(
                    "INSERT INTO products (reduction_id, kind, path, sha256, size_bytes, created_at) VALUES "
                    "(:r, :k, :p, :s, 1, CURRENT_TIMESTAMP) RETURNING id"
                ),
                {"r": reduction, "k": kind, "p": f"/x/{kind}.fits", "s": "0" * 64},
            ).scalar()
            connection.execute(
                sa.text(
                    "INSERT INTO calibrations (instrument, kind, date_obs, product_id, created_at) "
                    "VALUES ('SPHERE-IRDIS', :k, :d, :p, '2020-05-06 12:00:00')"
                ),
                {"k": kind, "d": date_obs, "p": product},
            )
        other = connection.execute(
            sa.text(  # a science product: untouched
                "INSERT INTO products (reduction_id, kind, path, sha256, size_bytes, created_at) VALUES "
                "(:r, 'cube', '/x/cube.fits', :s, 1, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"r": reduction, "s": "1" * 64},
        ).scalar()
    engine.dispose()
    upgrade(catalog_url, "0006")
    engine = make_engine(catalog_url)
    with engine.connect() as connection:
        rows = {
            kind: value
            for kind, value in connection.execute(sa.text("SELECT kind, release_date FROM products ORDER BY id")).all()
        }
        untouched = connection.execute(
            sa.text("SELECT release_date FROM products WHERE id = :i"), {"i": other}
        ).scalar()
    engine.dispose()
    released = {k: (v if isinstance(v, date) else date.fromisoformat(str(v))) for k, v in rows.items() if v}
    assert released == {"master_dark": date(2019, 3, 4), "master_flat": date(2020, 5, 6)}
    assert untouched is None
    assert all(access.is_released(d) for d in released.values())


def _state(catalog) -> tuple[int, str]:
    """The catalog's write count and token."""
    from hcdc.catalog.models import CatalogState

    with catalog.session() as session:
        state = session.get(CatalogState, 1)
        return state.changes, state.token


def _changes(catalog) -> int:
    return _state(catalog)[0]


def test_0012_every_table_counts_its_writes(catalog):
    """Every table but Alembic's and the counter's has the change trigger (a later revision that forgets it
    fails here), and the count moves once per committed writing transaction, not per row, and not on a
    rollback."""
    from sqlalchemy import text

    engine = catalog.engine
    tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version", "catalog_state"}
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            watched = set(
                connection.scalars(
                    text(
                        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "WHERE t.tgname = 'hcdc_changed'"
                    )
                )
            )
        else:
            names = set(connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
            operations = ("insert", "update", "delete")
            watched = {t for t in tables if all(f"hcdc_changed_{t}_{op}" in names for op in operations)}
    assert watched == tables, f"tables without the change trigger: {sorted(tables - watched)}"

    from hcdc.catalog.models import Programme, Target

    before, token = _state(catalog)
    assert len(token) == 32
    with catalog.session() as session:  # one transaction, many rows and tables
        session.add_all([Target(name=f"HD {i}", ra_deg=10.0 + i, dec_deg=-20.0) for i in range(25)])
        session.add(Programme(prog_id="0100.C-0001(A)", pi_name="ada"))
    after_insert = _changes(catalog)
    with catalog.session() as session:
        session.execute(sa.update(Target).values(dec_deg=-21.0))
    after_update = _changes(catalog)
    try:
        with catalog.session() as session:
            session.execute(sa.delete(Target))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    after_rollback = _changes(catalog)
    with catalog.session() as session:
        session.execute(sa.delete(Target))
    after_delete = _changes(catalog)
    with catalog.session() as session:  # a read-only transaction
        session.scalar(sa.select(sa.func.count(Target.id)))
    assert engine.dialect.name == "sqlite" or after_insert == before + 1
    assert after_insert > before and after_update > after_insert and after_delete > after_rollback
    assert after_rollback == after_update
    assert _changes(catalog) == after_delete
    assert _state(catalog)[1] != token  # drawn again: a count seen before a restore vouches for nothing after it
    if engine.dialect.name == "postgresql":  # TRUNCATE fires no row trigger: a statement trigger counts it
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE target_aliases"))
        assert _changes(catalog) == after_delete + 1
