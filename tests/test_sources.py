"""Sources across epochs (issue 15): the background track, the odds, linking, and the access rule on verdicts.

Real data: beta Pic b's published relative astrometry (Nielsen et al. 2020, Table 1, in
``published_companions``) with beta Pic's Hipparcos proper motion (van Leeuwen 2007, A&A 474, 653:
μα* = 4.65 ± 0.11, μδ = 83.10 ± 0.15 mas/yr), its Gaia DR3 parallax (50.9307 ± 0.1482 mas) and mass
(1.83 ± 0.04 Msun), the last two as ``species`` lists them (``species_0.11.0_companion_data.json``).
"""

from __future__ import annotations

import csv
import json
import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import select

from hcdc import access
from hcdc.catalog.models import (
    Detection,
    Observation,
    Programme,
    ProgrammeMember,
    Reduction,
    Target,
    User,
)
from reduction.astrometry import (
    Epoch,
    StarAstrometry,
    background_track,
    common_proper_motion_test,
    parallax_factors,
)

from .conftest import reference_data_dir

COMPANIONS = "published_companions"


def _beta_pic() -> tuple[list[Epoch], StarAstrometry]:
    folder = reference_data_dir() / COMPANIONS
    table = folder / "orbitize_3.4.0_betaPic_Nielsen2020_tab1.csv"
    species = folder / "species_0.11.0_companion_data.json"
    if not table.is_file() or not species.is_file():
        pytest.skip(f"published companion astrometry not found in {folder} (set HCDC_REFERENCE_DATA)")
    lines = [line for line in table.read_text().splitlines() if line.strip() and not line.startswith("#")]
    epochs = [
        Epoch(float(r["epoch"]), float(r["sep"]), float(r["sep_err"]), float(r["pa"]), float(r["pa_err"]))
        for r in csv.DictReader(lines)
        if r["sep"] and 54466 <= float(r["epoch"]) <= 58484  # 2008.0-2019.0: the 2008-2018
    ]
    entry = json.loads(species.read_text())["beta Pic b"]
    star = StarAstrometry(
        ra_deg=86.82119875,
        dec_deg=-51.06651447,
        pm_ra_mas_yr=4.65,
        pm_dec_mas_yr=83.10,
        parallax_mas=entry["parallax"][0],
        pm_ra_err_mas_yr=0.11,
        pm_dec_err_mas_yr=0.15,
        parallax_err_mas=entry["parallax"][1],
        mass_msun=entry["mass_star"][0],
    )
    return epochs, star


def _on_track(epochs: list[Epoch], star: StarAstrometry, rng=None) -> list[Epoch]:
    """The same epochs moved onto the background track of the first one (optionally with their noise)."""
    track, _ = background_track(star, [e.mjd for e in epochs], epochs[0])
    moved = []
    for e, (dx, dy) in zip(epochs, track):
        if rng is not None:
            cov = e.covariance
            dx, dy = np.array([dx, dy]) + rng.multivariate_normal([0, 0], cov)
        sep = math.hypot(dx, dy)
        moved.append(
            Epoch(e.mjd, sep, e.sep_err_mas, math.degrees(math.atan2(dx, dy)) % 360, e.pa_err_deg * e.sep_mas / sep)
        )
    return moved


def test_parallax_factors_match_astropy_apparent_places():
    """Our parallactic displacement equals astropy's: a star at 20 pc against one at 1 Gpc, both in GCRS."""
    import astropy.units as u
    from astropy.coordinates import GCRS, SkyCoord
    from astropy.time import Time

    ra, dec, plx = 86.82, -51.07, 50.0
    for mjd in (55000.0, 55091.3, 55182.6, 55273.9):
        t = Time(mjd, format="mjd", scale="tdb")
        near = SkyCoord(ra * u.deg, dec * u.deg, distance=(1000 / plx) * u.pc).transform_to(GCRS(obstime=t))
        far = SkyCoord(ra * u.deg, dec * u.deg, distance=1e9 * u.pc).transform_to(GCRS(obstime=t))
        dra, ddec = far.spherical_offsets_to(near)
        expected = np.array([dra.to_value(u.mas), ddec.to_value(u.mas)])
        ours = plx * parallax_factors(mjd, ra, dec)[0]
        # astropy adds light deflection and uses the geocentre: agreement to 0.05 mas on a 50-mas ellipse
        assert np.allclose(ours, expected, atol=0.05), (mjd, ours, expected)


def test_background_track_matches_astropy_apparent_places():
    """The whole track against astropy: the star moved by its proper motion and seen from the Earth (GCRS),
    a distant star fixed in ICRS; their offset changes as :func:`background_track` says (signs included)."""
    import astropy.units as u
    from astropy.coordinates import GCRS, SkyCoord
    from astropy.time import Time

    star = StarAstrometry(86.82, -51.07, 4.65, 83.10, 50.93)
    t0, epochs = 55000.0, [55000.0, 55200.0, 56000.0, 58000.0]
    star_icrs = SkyCoord(
        star.ra_deg * u.deg,
        star.dec_deg * u.deg,
        distance=(1000 / star.parallax_mas) * u.pc,
        pm_ra_cosdec=star.pm_ra_mas_yr * u.mas / u.yr,
        pm_dec=star.pm_dec_mas_yr * u.mas / u.yr,
        radial_velocity=0 * u.km / u.s,
        obstime=Time(t0, format="mjd", scale="tdb"),
    )
    background = star_icrs.spherical_offsets_by(-0.6 * u.arcsec, 0.8 * u.arcsec)
    background = SkyCoord(background.ra, background.dec, distance=1e9 * u.pc)
    offsets = []
    for mjd in epochs:
        t = Time(mjd, format="mjd", scale="tdb")
        here = star_icrs.apply_space_motion(new_obstime=t).transform_to(GCRS(obstime=t))
        there = background.transform_to(GCRS(obstime=t))
        dra, ddec = here.spherical_offsets_to(there)
        offsets.append([dra.to_value(u.mas), ddec.to_value(u.mas)])
    offsets = np.array(offsets)
    first = Epoch(t0, math.hypot(*offsets[0]), 1.0, math.degrees(math.atan2(*offsets[0])) % 360, 0.1)
    track, _ = background_track(star, epochs, first)
    # 830 mas of motion over 8 years. Left out of the track, as of every relative astrometry: the aberration's
    # change across 1" (20.5" x 1"/206265" = 0.1 mas, annual) and light bending; 0.3 mas holds both epochs'
    np.testing.assert_allclose(track, offsets, atol=0.3)


def test_beta_pic_b_is_comoving_and_its_epochs_on_the_background_track_are_background():
    epochs, star = _beta_pic()
    assert len(epochs) >= 20 and epochs[-1].year - epochs[0].year > 9
    bound = common_proper_motion_test(epochs, star)
    assert bound.status == "co-moving", bound
    assert bound.log10_odds > 100  # ten years of 83 mas/yr against a few-mas errors
    rng = np.random.default_rng(1)
    moved = common_proper_motion_test(_on_track(epochs, star, rng), star)
    assert moved.status == "background", moved
    assert moved.log10_odds < -100
    # the background model fits what was drawn from it: its chi2 is that of 2N-2 Gaussian dof
    assert moved.chi2_background < moved.dof + 5 * math.sqrt(2 * moved.dof)


def test_one_epoch_or_a_short_baseline_is_undetermined():
    epochs, star = _beta_pic()
    assert common_proper_motion_test(epochs[:1], star).status == "undetermined"
    # the first two NACO epochs (2008.9 and 2009.8, errors of 27 and 14 mas): b moved 89 mas roughly as a
    # background star would have (83 mas south): the data cannot tell
    early = epochs[:2]
    assert early[0].sep_err_mas > 10 and early[1].year - early[0].year < 1.5
    assert common_proper_motion_test(early, star).status == "undetermined"
    # while a few weeks of GPI (1-mas errors, MJD 56612-56636) are decisive: the parallax moved a background
    # star by ~15 mas in that time
    gpi = [e for e in epochs if 56600 < e.mjd < 56650]
    assert len(gpi) >= 2 and common_proper_motion_test(gpi, star).status == "co-moving"


def test_a_source_moving_faster_than_any_orbit_is_not_called_comoving():
    """Around a still 1-Msun star at 20 pc, a source moving out from 0.5": slower than escape, it may be bound;
    three times the escape speed (140 mas/yr at 0.5"), no orbit holds it, and no background star moves so."""
    star = StarAstrometry(150.0, -30.0, 0.0, 0.0, 50.0, mass_msun=1.0)

    def moving(speed_mas_yr):
        return [Epoch(57000.0 + 365.25 * k, 500.0 + speed_mas_yr * k, 3.0, 45.0, 0.4) for k in range(3)]

    assert common_proper_motion_test(moving(100.0), star).status == "co-moving"
    fast = common_proper_motion_test(moving(420.0), star)
    assert fast.status == "undetermined" and "does not fit" in fast.note, fast


# --- the catalog ---------------------------------------------------------------------------------------------

TODAY = date.today()


def _world(catalog, epochs_by_programme):
    """A target at 20 pc moving 80 mas/yr north, one observation per (programme letter, year offset)."""
    from hcdc.ingest import ensure_instruments

    with catalog.session() as session:
        ensure_instruments(session)
        target = Target(
            name="HD 1000",
            ra_deg=150.0,
            dec_deg=-30.0,
            pm_ra_mas_yr=0.0,
            pm_dec_mas_yr=80.0,
            pm_ra_err_mas_yr=0.1,
            pm_dec_err_mas_yr=0.1,
            parallax_mas=50.0,
            parallax_err_mas=0.1,
            mass_msun=1.0,
        )
        session.add(target)
        people = {}
        for name in ("alice", "carol"):
            people[name] = User(username=name)
            session.add(people[name])
        session.flush()
        programmes = {}
        for letter, pi in (("A", "alice"), ("C", "carol")):
            p = Programme(prog_id=f"0{ord(letter)}.C-0001(A)", title=letter)
            p.members.append(ProgrammeMember(user=people[pi], role="pi"))
            session.add(p)
            programmes[letter] = p
        session.flush()
        ids = {}
        for letter, years_ago, measurements in epochs_by_programme:
            when = datetime.now(timezone.utc) - timedelta(days=365.25 * years_ago)
            release = (when + timedelta(days=365)).date()
            obs = Observation(
                key=f"HD1000_{letter}_{years_ago}",
                instrument="SPHERE-IRDIS",
                target_id=target.id,
                programme_id=programmes[letter].id,
                night=when.date(),
                date_start=when,
                release_date=release,
            )
            session.add(obs)
            session.flush()
            red = Reduction(
                observation_id=obs.id,
                step="postprocess",
                step_version="1",
                inputs=[],
                status="done",
                release_date=release,
            )
            session.add(red)
            session.flush()
            for label, (dra, ddec) in measurements.items():
                sep = math.hypot(dra, ddec) / 1000
                d = Detection(
                    reduction_id=red.id,
                    observation_id=obs.id,
                    target_id=target.id,
                    x_px=0.0,
                    y_px=0.0,
                    sep_arcsec=sep,
                    sep_err_arcsec=0.004,
                    pa_deg=math.degrees(math.atan2(dra, ddec)) % 360,
                    pa_err_deg=math.degrees(0.004 / sep),
                    snr=20.0,
                    release_date=release,
                )
                session.add(d)
                session.flush()
                ids[(letter, years_ago, label)] = d.id
        return ids


def _positions(star_years: list[float]):
    """A bound companion at (300, 400) mas moving 2 mas/yr, and a background star on its track."""
    star = StarAstrometry(150.0, -30.0, 0.0, 80.0, 50.0, 0.1, 0.1, 0.1, 1.0)
    now = datetime.now(timezone.utc)
    mjds = [
        (now - timedelta(days=365.25 * y) - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400
        for y in star_years
    ]
    first = Epoch(mjds[0], math.hypot(-600, 200), 4.0, math.degrees(math.atan2(-600, 200)) % 360, 0.3)
    track, _ = background_track(star, mjds, first)
    out = []
    for k, (y, (bx, by)) in enumerate(zip(star_years, track)):
        t = star_years[0] - y
        out.append({"companion": (300 + 2 * t, 400 - 1.5 * t), "background": (bx, by)})
    return out


@pytest.fixture
def linked(catalog):
    years = [4.0, 2.0, 0.1]  # the last is alice's, still proprietary
    positions = _positions(years)
    spec = [("C", years[0], positions[0]), ("C", years[1], positions[1]), ("A", years[2], positions[2])]
    ids = _world(catalog, spec)
    from hcdc.sources import link_sources

    with catalog.session() as session:
        summary = link_sources(session)
    return ids, summary


def test_detections_of_three_epochs_link_into_two_sources(catalog, linked):
    ids, summary = linked
    assert summary.sources == 2 and summary.linked == 6
    with catalog.session() as session:
        source_of = {key: session.get(Detection, i).source_id for key, i in ids.items()}
    companion = {v for (_l, _y, label), v in source_of.items() if label == "companion"}
    background = {v for (_l, _y, label), v in source_of.items() if label == "background"}
    # the background star moved 320 mas in four years and is still one source
    assert len(companion) == 1 and len(background) == 1 and companion != background
    from hcdc.sources import link_sources

    with catalog.session() as session:
        again = link_sources(session)
        assert again.new_sources == 0 and again.removed_sources == 0
        assert {key: session.get(Detection, i).source_id for key, i in ids.items()} == source_of


def test_verdicts_as_staff_and_as_each_pi(catalog, linked):
    from hcdc.sources import source_rows

    with catalog.session() as session:
        staff = {r["source"]: r for r in source_rows(session)}
        statuses = sorted(r["status"] for r in staff.values())
        assert statuses == ["background", "co-moving"], staff
        assert all(r["n_epochs"] == 3 for r in staff.values())

        def as_user(name):
            principal = access.principal_for(session, name)
            return {r["source"]: r for r in source_rows(session, access.visibility_filter(Detection, principal))}

        alice, carol, nobody = as_user("alice"), as_user("carol"), as_user("nobody")
    # alice sees her proprietary epoch and the public ones: the same verdicts as staff
    assert {k: r["status"] for k, r in alice.items()} == {k: r["status"] for k, r in staff.items()}
    # carol and the public see two public epochs only: the verdicts and the odds come from those alone,
    # identical for both, so nothing of alice's epoch shows through
    for viewer in (carol, nobody):
        assert all(r["n_epochs"] == 2 for r in viewer.values())
        assert all(r["last_epoch"] < staff[k]["last_epoch"] - 1 for k, r in viewer.items())
    assert {k: (r["status"], r["log10_odds"]) for k, r in carol.items()} == {
        k: (r["status"], r["log10_odds"]) for k, r in nobody.items()
    }


def test_a_source_seen_only_in_a_proprietary_epoch_is_invisible_to_others(catalog):
    _world(catalog, [("A", 0.1, {"new": (100.0, 100.0)})])
    from hcdc.sources import link_sources, source_rows

    with catalog.session() as session:
        link_sources(session)
        assert len(source_rows(session)) == 1
        for name, expected in (("alice", 1), ("carol", 0), ("nobody", 0)):
            principal = access.principal_for(session, name)
            assert len(source_rows(session, access.visibility_filter(Detection, principal))) == expected, name


def test_service_answers_with_the_access_rule(catalog, linked):
    """The catalog service's api: same rows as the library for each viewer (RLS on PostgreSQL)."""
    from hcdc.service import CatalogAccess, NotFound

    service = CatalogAccess(catalog)
    for name, epochs in (("alice", 3), ("carol", 2)):
        rows = service.sources(service.principal(name))
        assert len(rows) == 2 and all(r["n_epochs"] == epochs for r in rows), (name, rows)
    png = service.source_plot(service.principal("carol"), rows[0]["source"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NotFound):
        service.source_plot(service.principal("carol"), 10**12)


def test_cli_registers_published_astrometry_links_and_exports(tmp_path, monkeypatch):
    """``hcdc register-astrometry`` (orbitize! format), ``hcdc sources link``, ``hcdc catalog sources``."""
    from astropy.table import Table
    from click.testing import CliRunner

    from hcdc.cli import main

    epochs, star = _beta_pic()
    table = reference_data_dir() / COMPANIONS / "orbitize_3.4.0_betaPic_Nielsen2020_tab1.csv"
    monkeypatch.setenv("HCDC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HCDC_CATALOG_URL", raising=False)
    from hcdc.settings import get_settings

    get_settings(fresh=True)  # the CLI reads the cached settings: re-read the environment just set
    try:
        targets = tmp_path / "targets.ecsv"
        Table(
            rows=[
                (
                    "beta Pic",
                    star.ra_deg,
                    star.dec_deg,
                    star.pm_ra_mas_yr,
                    star.pm_dec_mas_yr,
                    0.11,
                    0.15,
                    star.parallax_mas,
                    0.1482,
                    1.83,
                    "HD 39060",
                )
            ],
            names=(
                "name",
                "ra_deg",
                "dec_deg",
                "pm_ra_mas_yr",
                "pm_dec_mas_yr",
                "pm_ra_err_mas_yr",
                "pm_dec_err_mas_yr",
                "parallax_mas",
                "parallax_err_mas",
                "mass_msun",
                "aliases",
            ),
        ).write(targets, format="ascii.ecsv")
        (tmp_path / "empty").mkdir()
        runner = CliRunner()
        assert runner.invoke(main, ["ingest", str(tmp_path / "empty"), "--targets", str(targets)]).exit_code == 0
        assert (tmp_path / "data" / "catalog.sqlite").is_file()  # this test's catalog, not the machine's default
        args = [
            "register-astrometry",
            str(table),
            "--target",
            "HD 39060",
            "--reference",
            "Nielsen et al. 2020",
            "--object-name",
            "b",
        ]
        first = runner.invoke(main, args)
        assert first.exit_code == 0, first.output
        n_rows = sum(
            1
            for r in csv.DictReader(x for x in table.read_text().splitlines() if x.strip() and not x.startswith("#"))
            if r["sep"]
        )
        assert f"{n_rows} epoch(s) added" in first.output  # two bands of one night are two rows, none lost
        again = runner.invoke(main, args)
        assert "0 epoch(s) added" in again.output and f"{n_rows} already there" in again.output
        assert runner.invoke(main, ["sources", "link"]).exit_code == 0
        out = runner.invoke(main, ["catalog", "sources", "--format", "ecsv"])
        assert out.exit_code == 0, out.output
        rows = Table.read(out.stdout, format="ascii.ecsv")
        assert len(rows) == 1 and rows["status"][0] == "co-moving" and rows["known_name"][0] == "beta Pic b"
        assert rows["n_epochs"][0] == n_rows and rows["first_epoch"].unit == "yr"
        png = tmp_path / "b.png"
        plotted = runner.invoke(main, ["sources", "plot", str(rows["source"][0]), "-o", str(png)])
        assert plotted.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"
        bad = tmp_path / "bad.csv"
        bad.write_text("epoch_mjd,sep_arcsec,sep_err_arcsec,pa_deg,pa_err_deg\n58000,0.4,-0.01,12,1\n")
        refused = runner.invoke(main, ["register-astrometry", str(bad), "--target", "beta Pic", "--reference", "x"])
        assert refused.exit_code != 0 and "sep_err_arcsec must be > 0" in refused.output

    finally:  # the next tests read their own environment, not this test's data directory
        monkeypatch.undo()
        get_settings(fresh=True)


def test_known_companions_name_sources_and_flag_a_turned_angle(tmp_path):
    """DIplanets.txt (reference data) and a staff table: a match by host, separation and angle; a source at a
    known separation but half a turn away is flagged, not named."""
    from hcdc.known_companions import cross_match, read_diplanets, read_staff_table

    path = reference_data_dir() / "published_contrast_curves" / "DIplanets.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found (set HCDC_REFERENCE_DATA)")
    known = read_diplanets(path)
    hip = next(k for k in known if k.name == "HIP 65426 b")
    assert hip.sep_arcsec == pytest.approx(0.8288) and hip.pa_deg == pytest.approx(150.02)
    hosts = {"HIP 65426", "HIP65426"}
    assert cross_match(hosts, 0.826, 0.004, 149.2, 0.3, known) == ("HIP 65426 b", None)
    name, note = cross_match(hosts, 0.826, 0.004, 329.2, 0.3, known)  # the angle 180 deg off
    assert name is None and "angle convention" in note and "HIP 65426 b" in note
    assert cross_match({"PDS 70"}, 0.826, 0.004, 149.2, 0.3, known) == (None, None)  # another star
    assert cross_match(hosts, 1.5, 0.004, 150.0, 0.3, known) == (None, None)  # another separation
    staff = tmp_path / "known.csv"
    staff.write_text("host,name,sep_arcsec,pa_deg,reference\nPDS 70,PDS 70 b,0.178,140.2,Keppler et al. 2018\n")
    assert cross_match({"PDS 70"}, 0.180, 0.003, 142.0, 1.0, read_staff_table(staff))[0] == "PDS 70 b"
    staff.write_text("host,sep_arcsec,pa_deg\nPDS 70,0.178,140.2\n")
    with pytest.raises(ValueError, match="lacks column.*name"):
        read_staff_table(staff)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_multi_epoch_archive_gives_both_verdicts_through_the_whole_chain(tmp_path):
    """Simulated raw archive of 2016 and 2026 (HIP 65426 at both epochs: b on its orbit, cc1 a background star
    on its track), ingest, the systematic campaign over HIP 65426's two epochs (which links the sources), and
    the verdicts."""
    import yaml

    from hcdc.catalog import Catalog
    from hcdc.demo import write_target_table
    from hcdc.ingest import ingest
    from hcdc.pipeline.campaign import load_parameters, reprocess
    from hcdc.settings import Settings
    from hcdc.sources import source_rows
    from reduction.simulator import simulate_archive

    archive = tmp_path / "archive"
    simulate_archive(archive, nights=2, seed=12, window=192, ifs=False)
    truth = json.loads((archive / "truth.json").read_text())
    epochs_of = {}
    for entry in truth["observations"]:
        for c in entry["companions"]:
            epochs_of.setdefault(c["name"], set()).add(entry["night"])
    assert epochs_of["HIP 65426 b"] == epochs_of["HIP 65426 cc1"] == {"2016-06-05", "2026-06-01"}
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    catalog = Catalog(url)
    ingest(
        archive / "raw",
        catalog,
        programmes=archive / "programmes.ecsv",
        targets=write_target_table(archive / "truth.json", archive / "targets.ecsv"),
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "postprocess": {
                    "subtraction": {"ncomp": 4},
                    "characterisation": {"ncomp": 4, "n_injections": 4},
                    "confirm_with": "",  # the campaign's ANDROMEDA is tested in test_pipeline's truth test
                }
            }
        )
    )
    report = reprocess(
        catalog,
        Settings(data_dir=tmp_path / "data", catalog_url=url),
        campaign="epochs",
        executor="local",
        parameters=load_parameters(params),
        query="target=HIP 65426",  # the two epochs the verdicts need (the other targets cost CI minutes)
    )
    assert not report.failures, report.failures
    assert report.sources is not None and report.sources_error is None
    with catalog.session() as session:
        rows = source_rows(session)
        # seen by one who may see the 2026 epoch only, every source has one epoch, and no verdict
        recent = select(Observation.id).where(Observation.night >= date(2026, 1, 1))
        single = source_rows(session, Detection.observation_id.in_(recent))
    catalog.dispose()
    hip = [r for r in rows if r["target"] == "HIP 65426" and r["n_epochs"] >= 2]

    def near(row, name):  # the truth's position at the source's last epoch (2026)
        c = next(
            c
            for e in truth["observations"]
            if e["night"] == "2026-06-01" and e["target"] == "HIP 65426"
            for c in e["companions"]
            if c["name"] == name
        )
        return (
            abs(row["sep_arcsec"] - c["separation_arcsec"]) < 0.02
            and abs((row["pa_deg"] - c["pa_deg"] + 180) % 360 - 180) < 2
        )

    bound = [r for r in hip if near(r, "HIP 65426 b")]
    background = [r for r in hip if near(r, "HIP 65426 cc1")]
    assert len(bound) == 1 and bound[0]["status"] == "co-moving", hip
    assert len(background) == 1 and background[0]["status"] == "background", hip
    print(f"HIP 65426 b: log10 odds {bound[0]['log10_odds']:+.1f}; cc1: {background[0]['log10_odds']:+.1f}")
    assert {r["source"] for r in bound + background} <= {r["source"] for r in single}
    assert all(r["status"] == "undetermined" and r["n_epochs"] == 1 for r in single), single
