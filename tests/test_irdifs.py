"""IRDIFS: the IRDIS and IFS observations of one OB are linked, and a companion seen by both is one source
with both photometries (issue 19, item 5).

The observations are real ingest products of a simulated night (headers only: the OB ids, nights and
programmes are what ingest reads from the headers); the detections are written as the campaign writes them,
so each case of the cross-arm rule is set exactly: HD 206893 B seen by both arms at the same place (with
5 deg of field rotation both flagged ``low-rotation``), and a quasi-static speckle seen by IFS at 0.30" and
by IRDIS where the speckle's chromatic scaling puts it (0.30" x 1.593 / 1.143), which must not confirm.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hcdc.catalog.models import Detection, Observation, SpectrumPoint, Target
from hcdc.ingest import ingest
from reduction.simulator import simulate_archive

from .access_world import done_reduction

YJ = 1.143  # mean wavelength of the IFS YJ cube (um), as the spectral step records an IFS detection
H2, H3 = 1.593, 1.667  # IRDIS DB_H23


@pytest.fixture
def irdifs(catalog, tmp_path):
    archive = tmp_path / "archive"
    simulate_archive(archive, nights=1, seed=5, window=32, headers_only=True)
    ingest(archive / "raw", catalog, programmes=archive / "programmes.ecsv")
    with catalog.session() as session:
        target = session.scalar(select(Target).where(Target.name == "HD 206893"))
        arms = {o.instrument: o for o in session.scalars(select(Observation).where(Observation.target_id == target.id))}
        ifs, irdis = arms["SPHERE-IFS"], arms["SPHERE-IRDIS"]
        assert ifs.ob_id == irdis.ob_id and ifs.night == irdis.night

        def detection(observation, red, wavelength, sep, pa, sep_err, pa_err, snr, contrast, status="low-rotation"):
            row = Detection(
                reduction_id=red.id,
                observation_id=observation.id,
                target_id=target.id,
                wavelength_um=wavelength,
                x_px=0.0,
                y_px=0.0,
                sep_arcsec=sep,
                sep_err_arcsec=sep_err,
                pa_deg=pa,
                pa_err_deg=pa_err,
                snr=snr,
                contrast=contrast,
                contrast_err=0.15 * contrast,
                status=status,
                note="spectral vetting not possible: 1 channel(s) with S/N >= 3" if wavelength == YJ else None,
                release_date=observation.release_date,
            )
            session.add(row)
            session.flush()
            return row

        spectral, dbi = (
            done_reduction(session, ifs, "postprocess-spectral"),
            done_reduction(session, irdis, "postprocess"),
        )
        ids = {
            # HD 206893 B (0.268", 55.4 deg): both arms, within their errors
            "B ifs": detection(ifs, spectral, YJ, 0.2558, 55.22, 0.0033, 0.74, 5.8, 1.2e-5),
            "B h2": detection(irdis, dbi, H2, 0.2652, 55.90, 0.0060, 1.2, 8.0, 3.6e-5),
            "B h3": detection(irdis, dbi, H3, 0.2671, 55.10, 0.0065, 1.3, 7.1, 4.3e-5),
            # a speckle: IFS at 0.300", IRDIS where the same speckle goes at H2
            "speckle ifs": detection(ifs, spectral, YJ, 0.300, 200.0, 0.004, 0.8, 5.5, 2.0e-5),
            "speckle h2": detection(irdis, dbi, H2, 0.300 * H2 / YJ, 200.0, 0.006, 1.0, 6.0, 3.0e-5),
            # two unrelated low-rotation speckles 55 mas apart on one radius: nearer each other than where
            # the IFS one would go at H2 (0.418"), but 7 sigma apart: not one source
            "pair ifs": detection(ifs, spectral, YJ, 0.300, 250.0, 0.004, 0.8, 5.2, 2.0e-5),
            "pair h2": detection(irdis, dbi, H2, 0.355, 250.0, 0.006, 1.0, 5.4, 3.0e-5),
        }
        for channel in range(39):  # B's IFS spectrum
            session.add(
                SpectrumPoint(
                    detection_id=ids["B ifs"].id,
                    wavelength_um=0.957 + channel * (1.329 - 0.957) / 38,
                    contrast=1.2e-5,
                    contrast_err=2e-6,
                    snr=6.0,
                )
            )
        ids = {key: row.id for key, row in ids.items()}
        return {"ifs": ifs.id, "irdis": irdis.id, "programme_pi": _pi_of(session, ifs), **ids}


def _pi_of(session, observation) -> str:
    from hcdc.catalog.models import Programme

    programme = session.get(Programme, observation.programme_id)
    return next(m.user.username for m in programme.members if m.role == "pi")


def test_the_two_arms_of_one_ob_name_each_other(catalog, irdifs):
    from hcdc.tables import ob_partners, observations_table

    with catalog.session() as session:
        rows = {row["id"]: row for row in observations_table(session)}
        assert rows[irdifs["ifs"]]["ob_partner"] == irdifs["irdis"]
        assert rows[irdifs["irdis"]]["ob_partner"] == irdifs["ifs"]
        # an IRDIS-only OB has no partner; every link goes both ways and stays within one OB and night
        partners = ob_partners(session)
        observations = {o.id: o for o in session.scalars(select(Observation))}
        assert any(np.ma.is_masked(row["ob_partner"]) for row in rows.values())
        for a, b in partners.items():
            assert partners[b] == a
            assert observations[a].ob_id == observations[b].ob_id and observations[a].night == observations[b].night
            assert observations[a].instrument != observations[b].instrument
        # someone who may see only one of the two is not told the other's id
        only_ifs = {row["id"]: row for row in observations_table(session, visible_ids={irdifs["ifs"]})}
        assert np.ma.is_masked(only_ifs[irdifs["ifs"]]["ob_partner"])


def test_a_companion_seen_by_both_arms_is_confirmed_and_one_source_a_speckle_is_not(catalog, irdifs):
    from hcdc.sources import link_sources, source_photometry, source_rows, vet_ob_partners

    with catalog.session() as session:
        summary = link_sources(session, "HD 206893")
        status = {key: session.get(Detection, irdifs[key]) for key in ("B ifs", "B h2", "B h3", "speckle ifs")}
        for key in ("B ifs", "B h2", "B h3"):
            assert status[key].status == "confirmed", (key, status[key].status, status[key].note)
            assert "IRDIFS: seen by SPHERE-" in status[key].note and status[key].note.endswith("was low-rotation")
        assert status["B ifs"].note.startswith("spectral vetting not possible")  # the note it had is kept
        # the speckle is where a speckle goes, not where a point source stays; the pair is too far apart
        for key in ("speckle ifs", "speckle h2", "pair ifs", "pair h2"):
            assert session.get(Detection, irdifs[key]).status == "low-rotation", key
        # B is one source of three detections from two instruments; the speckle is not a source
        source_id = status["B ifs"].source_id
        assert source_id is not None
        assert {session.get(Detection, irdifs[k]).source_id for k in ("B ifs", "B h2", "B h3")} == {source_id}
        assert session.get(Detection, irdifs["speckle ifs"]).source_id is None
        (row,) = [r for r in source_rows(session) if r["source"] == source_id]
        assert row["instruments"] == "SPHERE-IFS, SPHERE-IRDIS" and row["n_detections"] == 3
        assert summary.sources == 1
        photometry = source_photometry(session, source_id=source_id)
        assert [(r["instrument"], r["kind"]) for r in photometry].count(("SPHERE-IFS", "channel")) == 39
        bands = [(r["wavelength_um"], r["contrast"]) for r in photometry if r["kind"] == "band"]
        assert bands == [(H2, 3.6e-5), (H3, 4.3e-5)]
        assert {r["ob_id"] for r in photometry} == {session.get(Observation, irdifs["ifs"]).ob_id}
        # idempotent: nothing changes on a second pass
        assert vet_ob_partners(session) == 0
        assert link_sources(session, "HD 206893").new_sources == 0
        # a newer IRDIS reduction without B: the IFS detection returns to what it was, note and all
        newer = done_reduction(session, session.get(Observation, irdifs["irdis"]), "postprocess")
        assert vet_ob_partners(session) == 1
        back = session.get(Detection, irdifs["B ifs"])
        assert back.status == "low-rotation"
        assert back.note == "spectral vetting not possible: 1 channel(s) with S/N >= 3"
        # ... and it leaves the source, whose photometry no longer lists it
        link_sources(session, "HD 206893")
        assert session.get(Detection, irdifs["B ifs"]).source_id is None
        # the newer IRDIS reduction sees B again: confirmed again
        again = session.get(Detection, irdifs["B h2"])
        session.add(
            Detection(
                reduction_id=newer.id,
                observation_id=irdifs["irdis"],
                target_id=again.target_id,
                wavelength_um=H2,
                x_px=0.0,
                y_px=0.0,
                sep_arcsec=again.sep_arcsec,
                sep_err_arcsec=again.sep_err_arcsec,
                pa_deg=again.pa_deg,
                pa_err_deg=again.pa_err_deg,
                snr=again.snr,
                status="low-rotation",
                release_date=again.release_date,
            )
        )
        session.flush()
        assert vet_ob_partners(session) == 2  # B in IFS and the new IRDIS detection
        assert session.get(Detection, irdifs["B ifs"]).status == "confirmed"


def test_a_long_note_keeps_the_mark_and_a_pi_save_does_not_steer_the_vetting(catalog, irdifs):
    """The mark fits in the 200 characters of a note (the note before it is shortened, never the mark);
    a PI's interactive save, newer than the campaign's reduction, is not what the vetting reads."""
    from hcdc.sources import IRDIFS_MARK, vet_ob_partners

    with catalog.session() as session:
        b = session.get(Detection, irdifs["B ifs"])
        b.note = "x" * 190
        done_reduction(session, session.get(Observation, irdifs["irdis"]), "postprocess-interactive")
        # the interactive reduction is the observation's newest; the campaign's detections are still read
        assert vet_ob_partners(session) == 3  # B in IFS and in both IRDIS bands
        b = session.get(Detection, irdifs["B ifs"])
        assert b.status == "confirmed" and len(b.note) <= 200
        assert b.note.startswith("xxx") and "…" in b.note and IRDIFS_MARK in b.note
        assert b.note.endswith("; was low-rotation")


def test_photometry_through_the_cli_and_the_service_with_the_access_rule(catalog, irdifs, monkeypatch):
    """The PI of the programme gets the source's photometry; anyone else the same answer as for no source."""
    from hcdc.cli import main
    from hcdc.service import CatalogAccess, NotFound
    from hcdc.settings import get_settings
    from hcdc.sources import link_sources

    with catalog.session() as session:
        link_sources(session, "HD 206893")
        source_id = session.get(Detection, irdifs["B ifs"]).source_id
        assert session.get(Observation, irdifs["ifs"]).release_date > date.today()  # proprietary
    service = CatalogAccess(catalog)
    rows = service.source_photometry(service.principal(irdifs["programme_pi"]), source_id)
    assert len(rows) == 39 + 2
    for outsider in ("nobody", "carol"):
        with pytest.raises(NotFound, match=f"no source {source_id}"):
            service.source_photometry(service.principal(outsider), source_id)
    with pytest.raises(NotFound):
        service.source_photometry(service.principal(irdifs["programme_pi"]), 10**12)
    monkeypatch.setenv("HCDC_CATALOG_URL", catalog.url)
    get_settings(fresh=True)
    result = CliRunner().invoke(main, ["catalog", "photometry", "--target", "HD 206893", "--format", "csv"])
    assert result.exit_code == 0, result.output
    exported = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(exported) == len(rows) and {r["source"] for r in exported} == {str(source_id)}
    missing = CliRunner().invoke(main, ["catalog", "photometry", "--source", "999999"])
    assert missing.exit_code != 0 and "no source 999999" in missing.output
