"""Ingest into the catalog, on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import io
import os
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import func, select

from hcdc.catalog.models import Observation, ObservationCalibration, Programme, RawFile, Target, User
from hcdc.ingest import ingest
from hcdc.tables import observations_table, write_table

from .factories import sequence, sphere_header, write_fits

NIGHT1 = datetime(2026, 6, 10, 23, 0)
NIGHT2 = datetime(2026, 6, 12, 1, 0)


def make_night(folder, start, ob_id, target, dit=16.0, flux_dit=0.84):
    """One OB (FLUX, CENTER, 4 OBJECT, SKY) plus the morning's backgrounds and flats."""
    files = []
    files += sequence(folder, "OBJECT,FLUX", start, 1, dit=flux_dit, ob_id=ob_id, target=target)
    files += sequence(folder, "OBJECT,CENTER", start + timedelta(minutes=3), 1, dit=dit, ob_id=ob_id, target=target)
    files += sequence(
        folder, "OBJECT", start + timedelta(minutes=6), 4, step_s=900, dit=dit, ob_id=ob_id, target=target
    )
    files += sequence(folder, "SKY", start + timedelta(hours=1, minutes=10), 1, dit=dit, ob_id=ob_id, target=target)
    morning = start.replace(hour=10, minute=0) + timedelta(days=1 if start.hour > 12 else 0)
    files += sequence(folder, "DARK,BACKGROUND", morning, 2, dit=dit)
    files += sequence(folder, "DARK,BACKGROUND", morning + timedelta(minutes=10), 2, dit=flux_dit)
    files += sequence(folder, "FLAT,LAMP", morning + timedelta(minutes=20), 2, dit=1.0)
    return files


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    make_night(root / "2026-06-10", NIGHT1, 101, "HIP 65426")
    make_night(root / "2026-06-11", NIGHT2, 102, "51 Eri")
    return root


def counts(catalog):
    with catalog.session() as session:
        return {
            "files": session.scalar(select(func.count(RawFile.id))),
            "accepted": session.scalar(select(func.count(RawFile.id)).where(RawFile.status == "accepted")),
            "observations": session.scalar(select(func.count(Observation.id))),
            "links": session.scalar(select(func.count(ObservationCalibration.id))),
            "targets": session.scalar(select(func.count(Target.id))),
            "updated": sorted(str(t) for t in session.scalars(select(Observation.updated_at))),
        }


def test_ingest_builds_observations_and_links(archive, catalog):
    report = ingest(archive, catalog)
    assert report.new == 2 * 13 and not report.rejected
    with catalog.session() as session:
        observations = list(session.scalars(select(Observation).order_by(Observation.night)))
        assert [o.night for o in observations] == [date(2026, 6, 10), date(2026, 6, 11)]
        first = observations[0]
        assert (first.n_science_files, first.n_center_files, first.n_flux_files) == (4, 1, 1)
        assert first.status == "complete"
        assert first.target.name == "HIP 65426"
        assert first.programme.prog_id == "094.D-0869(A)"
        roles = {}
        for link in first.calibration_links:
            roles.setdefault((link.role, link.for_dit_s), set()).add(link.raw_file.date_obs.day)
        # backgrounds for both DITs and the flat from the next morning (night 06-10 -> 06-11 10:00 UTC)
        assert set(roles) == {("background", 16.0), ("background", 0.84), ("flat", None), ("sky", 16.0)}
        assert roles[("background", 16.0)] == {11}
        # the missing closed-shutter darks are said, not hidden
        assert "no dark with DIT 16.00 s" in first.status_reason
        # science frames inherit the observation's release date; calibrations are public at once
        frame = session.scalar(select(RawFile).where(RawFile.kind == "science").limit(1))
        assert frame.release_date == frame.observation.release_date == date(2027, 6, 10)  # night 2026-06-10 + 12 months
        flat = session.scalar(select(RawFile).where(RawFile.kind == "flat").limit(1))
        assert flat.release_date == flat.date_obs.date()
        assert first.seeing_arcsec == pytest.approx(0.83)
        assert first.exposure_time_s == pytest.approx(4 * 2 * 16.0)


def test_reingest_is_idempotent_and_incremental(archive, catalog, tmp_path):
    ingest(archive, catalog)
    before = counts(catalog)
    second = ingest(archive, catalog)
    assert (second.new, second.updated, second.unchanged) == (0, 0, before["files"])
    assert not second.changed
    assert counts(catalog) == before
    # a new night appears later
    make_night(archive / "2026-06-20", datetime(2026, 6, 21, 2, 0), 103, "HIP 65426")
    third = ingest(archive, catalog)
    assert third.new == 13 and third.unchanged == before["files"]
    after = counts(catalog)
    assert after["observations"] == before["observations"] + 1
    assert after["targets"] == before["targets"]  # same star, same target row


def test_bad_files_are_rejected_and_reported(archive, catalog):
    bad = archive / "bad"
    bad.mkdir()
    (bad / "zero.fits").write_bytes(b"")
    (bad / "log.fits").write_text("not fits\n" * 50)
    good = write_fits(bad / "good_then_cut.fits", sphere_header("OBJECT", when="2026-06-11T03:00:00", ob_id=77))
    data = good.read_bytes()
    (bad / "truncated.fits").write_bytes(data[:-4000])
    good.unlink()
    plain = fits.PrimaryHDU(np.zeros((4, 4), dtype=np.float32))
    plain.writeto(bad / "no_eso.fits")
    no_type = sphere_header("OBJECT")
    del no_type["HIERARCH ESO DPR TYPE"]
    write_fits(bad / "no_type.fits", no_type)
    (bad / "README.txt").write_text("not data")

    report = ingest(archive, catalog)
    reasons = {os.path.basename(r.path): (r.reason, r.keyword) for r in report.rejected}
    assert set(reasons) == {"zero.fits", "log.fits", "truncated.fits", "no_eso.fits", "no_type.fits"}
    assert "empty" in reasons["zero.fits"][0]
    assert "not a FITS file" in reasons["log.fits"][0]
    assert "truncated" in reasons["truncated.fits"][0]
    assert reasons["no_eso.fits"][1] == "INSTRUME"
    assert reasons["no_type.fits"][1] == "HIERARCH ESO DPR TYPE"
    assert report.ignored_not_fits == 1
    assert report.new == 26 + 5  # the good files all made it
    with catalog.session() as session:
        assert session.scalar(select(func.count(Observation.id))) == 2
        rejected = session.scalars(select(RawFile).where(RawFile.status == "rejected")).all()
        assert len(rejected) == 5 and all(r.reject_reason for r in rejected)
    again = ingest(archive, catalog)
    assert again.new == 0 and len(again.rejected) == 5  # still reported, not re-read


def test_changed_file_is_reread(archive, catalog):
    ingest(archive, catalog)
    victim = sorted(archive.glob("2026-06-11/*.fits"))[3]
    header = fits.getheader(victim)
    header["HIERARCH ESO DPR TYPE"] = "OBJECT"
    with fits.open(victim) as hdul:
        data = hdul[0].data
        kind_before = hdul[0].header["HIERARCH ESO DPR TYPE"]
    fits.PrimaryHDU(data, header=sphere_header("DARK", when=header["DATE-OBS"], dit=16.0)).writeto(
        victim, overwrite=True
    )
    report = ingest(archive, catalog)
    assert report.updated == 1 and report.new == 0
    with catalog.session() as session:
        row = session.scalar(select(RawFile).where(RawFile.path == str(victim)))
        assert row.kind == "dark" and kind_before != "DARK"
        assert row.observation_id is None


def test_programme_table_sets_people_and_release(archive, catalog, tmp_path):
    table = Table(
        rows=[
            ("094.D-0869(A)", "pkervella", "Pierre Kervella", "alice,bob", "Alice A.;Bob B.", 6, "VY CMa and friends")
        ],
        names=("prog_id", "pi", "pi_name", "co_is", "co_i_names", "proprietary_months", "title"),
    )
    path = tmp_path / "programmes.ecsv"
    table.write(path, format="ascii.ecsv")
    ingest(archive, catalog, programmes=path)
    with catalog.session() as session:
        programme = session.scalar(select(Programme).where(Programme.prog_id == "094.D-0869(A)"))
        roles = {m.user.username: m.role for m in programme.members}
        assert roles == {"pkervella": "pi", "alice": "coi", "bob": "coi"}
        assert programme.pi_name == "Pierre Kervella"
        assert {m.user.username: m.user.full_name for m in programme.members}["bob"] == "Bob B."
        first = session.scalar(select(Observation).order_by(Observation.night).limit(1))
        assert first.release_date == date(2026, 12, 10)  # 6 months after the last frame (the night of 06-10)
        n_users = session.scalar(select(func.count(User.id)))
    ingest(archive, catalog, programmes=path)
    with catalog.session() as session:
        assert session.scalar(select(func.count(User.id))) == n_users


def test_observation_tables_in_every_format(archive, catalog):
    ingest(archive, catalog)
    with catalog.session() as session:
        table = observations_table(session)
        assert len(table) == 2
        for fmt, reader in (("csv", "ascii.csv"), ("ecsv", "ascii.ecsv"), ("votable", "votable")):
            buffer = io.StringIO()
            write_table(table, fmt, buffer)
            text = buffer.getvalue()
            back = Table.read(io.BytesIO(text.encode()) if fmt == "votable" else text, format=reader)
            assert len(back) == 2
            assert list(back["target"]) == ["HIP 65426", "51 Eri"]
            assert float(back["dit_s"][0]) == 16.0
        only = observations_table(session, target="hip65426")
        assert list(only["target"]) == ["HIP 65426"]


def test_fast_ecsv_is_byte_for_byte_astropys():
    """``hcdc.tables.ecsv_text`` against astropy's own ECSV writer, on the cells that are hard to write:
    masked values of every type, empty and blank strings, delimiters, quotes, non-ASCII, extreme floats."""
    from hcdc.tables import build_table, ecsv_text

    columns = (("name", None, "a name"), ("count", None, "a count"), ("value", "arcsec", "a value"), ("ok", None, "?"))
    rows = [
        {"name": 'HD 1, "the" star', "count": 3, "value": 0.1 + 0.2, "ok": True},
        {"name": None, "count": None, "value": None, "ok": None},
        {"name": "", "count": -7, "value": 1e-300, "ok": False},
        {"name": "   ", "count": 2**40, "value": float("nan"), "ok": True},
        {"name": "β Pic b", "count": 0, "value": -123456.789e10, "ok": False},
        {"name": "a\tb 'c'", "count": 1, "value": float("inf"), "ok": True},
    ]
    table = build_table(rows, columns, meta={"table": "test"})
    reference = io.StringIO()
    table.write(reference, format="ascii.ecsv")
    assert ecsv_text(table) == reference.getvalue()
    back = Table.read(ecsv_text(table), format="ascii.ecsv")
    assert back["name"][0] == 'HD 1, "the" star' and back["name"].mask[1] and back["value"].unit == "arcsec"


def test_fast_votable_is_byte_for_byte_astropys():
    """``hcdc.tables.votable_text`` against astropy's own VOTable writer, on the cells that are hard to write:
    masked values of every type, empty strings, XML specials, non-ASCII, extreme and non-finite floats,
    float32 and fixed-width strings; a column kind it does not format (bits, arrays) goes through astropy."""
    from astropy.table import MaskedColumn

    from hcdc.tables import _astropy_votable, build_table, votable_text

    columns = (("name", None, "a name"), ("count", None, "a count"), ("value", "arcsec", "a value"))
    rows = [
        {"name": 'HD 1 <b> & "the" star', "count": 3, "value": 0.1 + 0.2},
        {"name": None, "count": None, "value": None},
        {"name": "", "count": -7, "value": 1e-300},
        {"name": "   ", "count": 2**40, "value": float("nan")},
        {"name": "β Pic b", "count": 0, "value": -123456.789e10},
        {"name": "a\tb 'c'", "count": 1, "value": float("inf")},
        {"name": "x", "count": 2, "value": -float("inf")},
        {"name": "y", "count": 5, "value": 3.0},
    ]
    table = build_table(rows, columns, meta={"table": "test"})
    table["small"] = np.array([0.1, 2.0, 1e-8, 3.5e30, 0.0, -0.0, 7.25, 1e16], dtype=np.float32)
    table["ascii"] = MaskedColumn(np.array(["ab", "c", "", "d&e", "fg", "h", "i", "<j>"], dtype="S3"), mask=[0, 1] * 4)
    reference = _astropy_votable(table)
    assert votable_text(table) == reference
    assert votable_text(table[:0]) == _astropy_votable(table[:0])
    back = Table.read(io.BytesIO(votable_text(table).encode()), format="votable")
    assert back["name"][0] == 'HD 1 <b> & "the" star' and back["name"][1] == "" and back["value"].unit == "arcsec"
    assert back["value"].mask[3] and back["value"][5] == np.inf and back["count"][3] == 2**40  # NaN: masked
    for other in (np.array([True, False] * 4), np.arange(16.0).reshape(8, 2)):  # bits; arrays
        table["other"] = other
        assert votable_text(table) == _astropy_votable(table)


def test_ingest_batches_and_workers_agree(archive, catalog, tmp_path):
    """Parallel header reading and small batches give the same catalog."""
    for i in range(60):  # enough files for the process pool to be used
        write_fits(
            archive / "extra" / f"dark{i:03d}.fits",
            sphere_header("DARK", when=f"2026-06-15T10:{i // 60:02d}:{i % 60:02d}", dit=2.0),
        )
    report = ingest(archive, catalog, workers=2, batch_size=7)
    assert report.new == 86 and not report.rejected
    assert counts(catalog)["accepted"] == 86
