"""Ingest of a simulated archive against the simulator's ground truth (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hcdc.catalog.models import Observation, Programme, RawFile
from hcdc.demo import write_target_table
from hcdc.ingest import ingest
from hcdc.truthcheck import compare_with_truth
from reduction.simulator import simulate_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Three nights (one archival, before the 2021 keyword rename), headers with tiny pixels."""
    root = tmp_path_factory.mktemp("sim") / "archive"
    simulate_archive(root, nights=3, seed=5, window=32, headers_only=True)
    return root


def test_catalog_matches_truth_exactly(archive, catalog):
    truth = json.loads((archive / "truth.json").read_text())
    report = ingest(
        archive / "raw",
        catalog,
        programmes=archive / "programmes.ecsv",
        targets=write_target_table(archive / "truth.json", archive / "targets.ecsv"),
    )
    assert not report.rejected
    expected = truth["expected_counts"]
    assert report.new == expected["files"]
    with catalog.session() as session:
        comparison = compare_with_truth(session, archive / "truth.json")
        assert comparison.ok, comparison.render()
        assert comparison.matched == expected["observations"] == comparison.catalog_observations
        by_type = Counter(
            dict(session.execute(select(RawFile.dpr_type, func.count()).group_by(RawFile.dpr_type)).all())
        )
        assert by_type == Counter(expected["files_by_dpr_type"])
        # people and rights come from the programme table
        for programme in truth["programmes"]:
            row = session.scalar(select(Programme).where(Programme.prog_id == programme["prog_id"]))
            members = {m.user.username: m.role for m in row.members}
            assert members[programme["pi"]] == "pi"
            assert all(members[c] == "coi" for c in programme["co_is"] if c != programme["pi"])
        # conditions: the catalog keeps the median over the OBJECT files, the truth the mean over all
        # frames; both must lie in the written range and agree to the DIMM's ~10 % accuracy
        for entry in truth["observations"]:
            obs = session.scalar(
                select(Observation).where(
                    Observation.instrument == entry["instrument"], Observation.ob_id == entry["ob_id"]
                )
            )
            written = entry["conditions"]
            low, high = written["seeing_range_arcsec"]
            assert low <= obs.seeing_arcsec <= high
            assert obs.seeing_arcsec == pytest.approx(written["seeing_arcsec"], rel=0.1)
            assert obs.airmass == pytest.approx(written["airmass"], rel=0.05)
            assert obs.tau0_ms == pytest.approx(written["tau0_ms"], rel=0.2)
            assert obs.target.parallax_mas is not None


def test_incremental_nights_end_at_the_same_catalog(archive, catalog):
    nights = sorted(p for p in (archive / "raw").iterdir() if p.is_dir())
    assert len(nights) == 3
    ingest(nights[0], catalog, programmes=archive / "programmes.ecsv")
    first = ingest(nights[1], catalog)
    assert first.observations_added > 0
    final = ingest(archive / "raw", catalog)
    assert final.unchanged > 0 and final.new > 0
    with catalog.session() as session:
        comparison = compare_with_truth(session, archive / "truth.json")
    assert comparison.ok, comparison.render()
    again = ingest(archive / "raw", catalog)
    assert (again.new, again.updated) == (0, 0) and not again.changed
