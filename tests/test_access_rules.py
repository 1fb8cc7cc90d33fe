"""The access rule (hcdc.access), its SQL filter and PostgreSQL row-level security agree row by row."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select, text

from hcdc import access
from hcdc.access import Principal, derived_release_date, visible
from hcdc.catalog.models import (
    Detection,
    DetectionLimit,
    DetectionLimitPoint,
    Observation,
    Product,
    RawFile,
    SpectrumPoint,
)
from hcdc.service import CatalogAccess, Forbidden, NotFound

from .access_world import build_world
from .conftest import _reset_postgres

TODAY = date.today()
PAST, FUTURE = TODAY - timedelta(days=1), TODAY + timedelta(days=1)


@pytest.mark.parametrize(
    "principal, release, programme, expected",
    [
        (Principal("x"), PAST, 1, True),  # released: everybody
        (Principal("x"), TODAY, 1, True),  # released today
        (Principal("x"), FUTURE, 1, False),  # proprietary, not a member
        (Principal("x", programme_ids=frozenset({1})), FUTURE, 1, True),  # PI/co-I of the programme
        (Principal("x", programme_ids=frozenset({2})), FUTURE, 1, False),  # member of another programme
        (Principal("x", is_staff=True), FUTURE, 1, True),  # staff see everything
        (Principal("x"), None, 1, False),  # no release date: never public
        (Principal("x", programme_ids=frozenset({1})), None, None, False),  # no programme: members irrelevant
        (Principal("", known=False), FUTURE, None, False),  # anonymous
    ],
)
def test_the_rule(principal, release, programme, expected):
    assert visible(principal, release, programme, TODAY) is expected


def test_derived_rows_inherit_the_latest_release_date():
    assert derived_release_date([PAST, FUTURE, TODAY]) == FUTURE
    assert derived_release_date([PAST]) == PAST
    assert derived_release_date([PAST, None]) is None  # an input never public keeps the product private
    with pytest.raises(ValueError, match="at least one input"):
        derived_release_date([])


PEOPLE = ("alice", "bob", "dave", "carol", "sam", "nobody")
EXPECTED_OBSERVATIONS = {"alice": "AC", "bob": "BC", "dave": "AC", "carol": "C", "sam": "ABC", "nobody": "C"}
MODELS = (Observation, RawFile, Product, Detection, DetectionLimit)


@pytest.fixture
def world(catalog, tmp_path):
    return build_world(catalog, tmp_path, tmp_path / "data")


def test_sql_filter_equals_the_rule_row_by_row(catalog, world):
    with catalog.session() as session:
        principals = {name: access.principal_for(session, name) for name in PEOPLE}
        assert principals["sam"].is_staff and not principals["nobody"].known
        assert principals["dave"].programme_ids == principals["alice"].programme_ids
        letters = {oid: letter for letter, oid in world.observation.items()}
        for name, principal in principals.items():
            seen = {letters[o.id] for o in access.visible_observations(session, principal)}
            assert "".join(sorted(seen)) == EXPECTED_OBSERVATIONS[name], name
            for model in MODELS:
                by_sql = set(session.scalars(select(model.id).where(access.visibility_filter(model, principal))))
                by_rule = {
                    row.id for row in session.scalars(select(model)) if access.row_visible(session, principal, row)
                }
                assert by_sql == by_rule, (name, model.__name__)
        # calibrations are public at once, science frames of A/B are not
        nobody_files = set(session.scalars(access.visible_query(RawFile, principals["nobody"])))
        kinds = {(f.kind, f.observation_id in (world.observation["A"], world.observation["B"])) for f in nobody_files}
        assert ("science", True) not in kinds and ("flat", False) in kinds


def test_products_inherit_the_release_date_of_their_inputs(catalog, world):
    with catalog.session() as session:
        for letter, product_id in world.product.items():
            product = session.get(Product, product_id)
            inputs = list(
                session.scalars(select(RawFile.release_date).where(RawFile.observation_id == product.observation_id))
            )
            assert product.release_date == max(inputs + [world.release[letter]])


def test_service_queries_refuse_clearly(catalog, world):
    service = CatalogAccess(catalog)
    alice = service.principal("alice")
    assert [o["key"] for o in service.observations(alice, mine=True)] == [world.key["A"]]
    assert {o["key"] for o in service.observations(alice)} == {world.key["A"], world.key["C"]}
    with pytest.raises(Forbidden, match="proprietary"):
        service.observation(alice, world.observation["B"])
    with pytest.raises(Forbidden, match="proprietary"):
        service.product_file(alice, world.product["B"])
    with pytest.raises(Forbidden):
        service.children(alice, world.observation["B"], "detections")
    with pytest.raises(NotFound, match="does not exist"):
        service.observation(alice, 987654)
    path, meta = service.product_file(alice, world.product["A"])
    assert path == world.product_path["A"] and meta["sha256"] == world.product_sha256["A"]
    nobody = service.principal("nobody")
    assert "only public" in service.whoami(nobody)["message"]
    with pytest.raises(NotFound, match="not PI or co-I of any programme"):
        service.observations(nobody, mine=True)
    assert service.observations(service.principal("sam"), mine=True)  # staff: everything is theirs to see


@pytest.fixture
def pg_catalog(postgres_database):
    from hcdc.catalog import Catalog

    _reset_postgres(postgres_database)
    catalog = Catalog(postgres_database)
    yield catalog
    catalog.dispose()


@pytest.mark.postgres
def test_row_level_security_enforces_the_same_rule(pg_catalog, tmp_path):
    catalog = pg_catalog
    world = build_world(catalog, tmp_path, tmp_path / "data")
    service = CatalogAccess(catalog)
    assert service.use_rls, "migration 0003 should have created the reader role"
    models = (*MODELS, DetectionLimitPoint, SpectrumPoint)
    children = (DetectionLimitPoint, SpectrumPoint)
    for name in PEOPLE:
        principal = service.principal(name)
        with catalog.session() as session:
            expected = {
                model: set(session.scalars(select(model.id).where(access.visibility_filter(model, principal))))
                for model in models
                if model not in children
            }
            limits, detections = expected[DetectionLimit], expected[Detection]
            expected[DetectionLimitPoint] = set(
                session.scalars(select(DetectionLimitPoint.id).where(DetectionLimitPoint.limit_id.in_(limits)))
            )
            # the spectra (migration 0011) follow their detection
            expected[SpectrumPoint] = set(
                session.scalars(select(SpectrumPoint.id).where(SpectrumPoint.detection_id.in_(detections)))
            )
            assert expected[SpectrumPoint] or not detections
        # the database alone, with no filter in the query, returns exactly what the rule allows
        with service.session_for(principal) as session:
            for model in models:
                assert set(session.scalars(select(model.id))) == expected[model], (name, model.__name__)
    # without a user the reader role sees released rows only; it can write nothing
    with catalog.engine.connect() as connection:
        with connection.begin():
            connection.execute(text(f"SET LOCAL ROLE {access.READER_ROLE}"))
            keys = set(connection.scalars(text("SELECT key FROM observations")))
            assert keys == {world.key["C"]}
        with pytest.raises(Exception, match="permission denied"):
            with connection.begin():
                connection.execute(text(f"SET LOCAL ROLE {access.READER_ROLE}"))
                connection.execute(text("UPDATE observations SET release_date = '2000-01-01'"))
