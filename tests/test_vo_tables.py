"""What the VO service would serve, without a VO server: the generated resource descriptor, and the
released-rows selection of ``hcdc vo publish`` on a catalog with proprietary and public programmes
(:mod:`tests.access_world`). The server itself is tested in ``tests/test_vo.py``."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import date, timedelta

import astropy.units as u
import pytest
from sqlalchemy import update

from hcdc.catalog.db import Catalog
from hcdc.catalog.models import Campaign, CampaignReduction, Detection, Observation, Product, Reduction
from hcdc.vo import OBSCORE_COLUMNS, product_kind, product_rows_for, resource_descriptor, table_specs

from .access_world import build_world
from .synthetic_catalog import add_campaign_results


def test_the_resource_descriptor_declares_every_column_with_a_description_and_a_vounit():
    tree = ElementTree.fromstring(resource_descriptor().split("\n", 1)[1])
    tables = {t.get("id"): t for t in tree.findall("table")}
    assert set(tables) == {spec.name for spec in table_specs()}
    for spec in table_specs():
        declared = {c.get("name") or c.get("original"): c for c in tables[spec.name].findall("column")}
        assert list(declared) == list(spec.column_names), spec.name
        for column in spec.columns:
            if spec.name == "products" and column.name in OBSCORE_COLUMNS:
                continue  # DaCHS' own ObsCore definitions
            element = declared[column.name]
            assert element.get("description"), (spec.name, column.name)
            if element.get("unit"):
                u.Unit(element.get("unit"), format="vounit")  # raises on a unit VO clients cannot read
        for key in spec.key:
            assert declared[key].get("required") == "True" or spec.name == "products"
    # positions are findable by UCD (cone search, TOPCAT's sky plots)
    targets = {c.get("name"): c.get("ucd") for c in tables["targets"].findall("column")}
    assert targets["ra_deg"] == "pos.eq.ra;meta.main" and targets["dec_deg"] == "pos.eq.dec;meta.main"
    # no column is an ADQL reserved word (taplint's error E-TME-CRSV)
    reserved = {"pi", "top", "distance", "point", "circle", "area", "power", "order", "select", "from", "where"}
    for spec in table_specs():
        assert not reserved & set(spec.column_names), spec.name


def test_band_suffixes_of_irdis_products_are_read():
    assert product_kind("residuals_b2") == ("residuals", 2)
    assert product_kind("contrast_curve") == ("contrast_curve", None)
    assert product_kind("channel_residuals") == ("channel_residuals", None)


@pytest.fixture
def world_catalog(tmp_path):
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    world = build_world(catalog, tmp_path / "inputs", tmp_path / "data")
    add_campaign_results(catalog, tmp_path / "data", name="vo-selection")
    with catalog.session() as session:
        session.execute(update(Reduction).where(Reduction.campaign_id.is_not(None)).values(step="postprocess"))
        for reduction in session.query(Reduction).filter(Reduction.campaign_id.is_not(None)):
            path = tmp_path / "data" / f"r{reduction.id}.fits"
            path.write_bytes(b"SIMPLE")
            session.add(
                Product(
                    reduction_id=reduction.id,
                    observation_id=reduction.observation_id,
                    kind="residuals_b1",
                    path=str(path),
                    sha256="0" * 64,
                    size_bytes=6,
                    release_date=reduction.release_date,
                )
            )
    yield catalog, world
    catalog.dispose()


def test_publish_selects_released_rows_only_whatever_the_table(world_catalog):
    catalog, world = world_catalog
    today = date.today()
    with catalog.session() as session:
        rows = {spec.name: spec.rows(session, today) for spec in table_specs() if spec.name != "products"}
        rows["products"] = product_rows_for(session, today, "hcdc.test", "http://127.0.0.1:1")
    public = world.observation["C"]
    assert [r["observation"] for r in rows["observations"]] == [world.key["C"]]
    assert [r["target"] for r in rows["targets"]] == [world.target["C"]]
    for name in ("detections", "detection_limits", "products"):
        assert rows[name], name
        assert {r["observation"] for r in rows[name]} == {public}, name
    assert all(r["release_date"] <= today.isoformat() for name in rows for r in rows[name] if "release_date" in r)
    product = rows["products"][0]
    assert product["dataproduct_type"] == "image" and product["dataproduct_subtype"] == "residuals_b1"
    assert product["access_url"].startswith("http://127.0.0.1:1/hcdc/q/dl/dlmeta?ID=ivo%3A%2F%2Fhcdc.test%2F")


def test_a_derived_row_waits_for_its_own_release_date_and_an_unfinished_campaign_is_not_served(world_catalog):
    """A detection made with a proprietary input (an RDI reference, say) inherits its later release date:
    it stays unserved although its observation is public; a campaign still running serves nothing."""
    catalog, world = world_catalog
    today = date.today()
    with catalog.session() as session:
        later = today + timedelta(days=200)
        session.execute(
            update(Detection).where(Detection.observation_id == world.observation["C"]).values(release_date=later)
        )
        session.execute(
            update(Product).where(Product.observation_id == world.observation["C"]).values(release_date=None)
        )
    with catalog.session() as session:
        specs = {spec.name: spec for spec in table_specs()}
        assert specs["observations"].rows(session, today)  # the observation itself is public
        assert not specs["detections"].rows(session, today)
        assert not product_rows_for(session, today, "hcdc.test", "http://127.0.0.1:1")  # no date: never
        assert specs["detection_limits"].rows(session, today)
        session.execute(update(Campaign).values(finished_at=None))
    with catalog.session() as session:
        assert not specs["detection_limits"].rows(session, today)  # no finished campaign: nothing
        assert session.query(CampaignReduction).count() and session.query(Observation).count()
