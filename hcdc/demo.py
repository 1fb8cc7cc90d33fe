"""``make demo``: the main job on the embedded default (SQLite catalog, local data dir).

Simulates a small raw SPHERE archive (once; re-running reuses it), ingests it,
registers the real NACO beta Pic cube when the reference data are there,
prints the catalog summary and checks the catalog against the simulator's
ground truth. Everything lives under ``HCDC_DATA_DIR``; running it again is
idempotent (nothing is simulated or ingested twice).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import date
from pathlib import Path

from astropy.table import Table

from .accounts import run_as_service_account
from .catalog.db import Catalog
from .external import ExternalCube, register_external
from .ingest import ingest
from .settings import get_settings
from .summary import render_summary
from .truthcheck import compare_with_truth

DEMO_NIGHTS = 3
DEMO_SEED = 1
DEMO_WINDOW = 256
#: The angle file of the 2019 VIP tutorial's NACO beta Pic cube (naco_betapic_pa.fits) leaves out a constant:
#: with it, b comes out at PA 314.5 deg; with the derotation angles of the VIP >= 1.0 tutorials
#: (naco_betapic_derot_angles.fits, vortex-exoplanet/VIP_extras) at PA 210.4 deg, as measured in
#: ../shared/data/naco_betapic/SOURCES.md. Their difference is the offset added at registration; the result
#: agrees with the published 211.9 +- 1.2 deg (Nielsen et al. 2020, MJD 56263).
NACO_BETAPIC_ANGLE_OFFSET_DEG = -104.1
NACO_BETAPIC_ANGLE_OFFSET_SOURCE = (
    "VIP >= 1.0 tutorials' naco_betapic_derot_angles.fits vs the 2019 naco_betapic_pa.fits: b at PA 210.4 vs "
    "314.5 deg (shared/data/naco_betapic/SOURCES.md)"
)
#: where the published astrometry of beta Pic b registered by the demo comes from
BETA_PIC_ASTROMETRY_REFERENCE = "Nielsen et al. 2020, AJ 159, 71, Table 1 (orbitize! example data)"
#: the star's flux in a 1-FWHM aperture of this cube (VIP tutorial's starphot, SOURCES.md)
NACO_BETAPIC_STAR_FLUX = 764939.6


def naco_betapic_cube(folder: Path, **overrides) -> ExternalCube:
    """The NACO L' beta Pic cube of the VIP tutorial (``folder``: its reference-data folder) as the demo
    registers it: sky-true angles (the offset the 2019 angle file lacks), re-centred on the vortex's dark
    hole, the tutorial's star flux. The benchmarks and tests register it the same way."""
    values = dict(
        cube=folder / "naco_betapic_cube.fits",
        angles=folder / "naco_betapic_pa.fits",
        psf=folder / "naco_betapic_psf.fits",
        pixel_scale_arcsec=0.02719,
        instrument="NACO",
        target="beta Pic",
        night=date(2013, 2, 1),
        filter="L_prime",
        release_date=date(2013, 2, 1),
        reference="Absil et al. 2013, A&A 559, L12; VIP tutorial cube",
        angle_offset_deg=NACO_BETAPIC_ANGLE_OFFSET_DEG,
        angle_offset_source=NACO_BETAPIC_ANGLE_OFFSET_SOURCE,
        recenter="negative",  # AGPM vortex: the star is a dark hole (the tutorial's recipe)
        star_flux=NACO_BETAPIC_STAR_FLUX,
    )
    values.update(overrides)
    return ExternalCube(**values)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_target_table(truth_path: Path, out: Path) -> Path:
    """The targets' physical properties as a table ingest can load (name, coordinates, ...)."""
    import json

    from reduction.simulator.catalogue import TARGETS

    targets = json.loads(truth_path.read_text())["targets"]
    targets = list(targets.values() if isinstance(targets, dict) else targets)
    # the catalogue's other stars too (real values): beta Pic for the registered NACO cube and its published orbit
    observed = {t["name"] for t in targets}
    targets += [t.to_dict() for name, t in TARGETS.items() if name not in observed]
    rows = []
    for t in targets:
        rows.append(
            {
                "name": t["name"],
                "ra_deg": t["ra_deg"],
                "dec_deg": t["dec_deg"],
                "pm_ra_mas_yr": t["pm_ra_mas_yr"],
                "pm_dec_mas_yr": t["pm_dec_mas_yr"],
                "parallax_mas": t["parallax_mas"],
                "mass_msun": t.get("mass_msun"),
                "spectral_type": t["spectral_type"],
                "age_myr": t["age_myr"],
                "mag_J": t["j_mag"],
                "mag_H": t["h_mag"],
                "mag_K": t["k_mag"],
            }
        )
    Table(rows=rows).write(out, format="ascii.ecsv", overwrite=True)
    return out


def main() -> int:
    demo_started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    settings = get_settings()
    data_dir = settings.data_dir
    archive = data_dir / "archive"
    vo_missing = _vo_prerequisites()  # as root, before dropping to the service account
    run_as_service_account(settings, say)
    say(f"HC-DC demo in {data_dir} (catalog {settings.resolved_catalog_url})")
    if not (archive / "truth.json").exists():
        from reduction.simulator import simulate_archive

        say(
            f"1/6 simulating {DEMO_NIGHTS} nights of SPHERE IRDIS/IFS raw data (seed {DEMO_SEED}, "
            f"{DEMO_WINDOW}-px windows) ..."
        )
        started = time.perf_counter()
        simulate_archive(archive, nights=DEMO_NIGHTS, seed=DEMO_SEED, window=DEMO_WINDOW, progress=sys.stderr.isatty())
        stage_seconds["simulation"] = time.perf_counter() - started
        say(f"    done in {stage_seconds['simulation']:.0f} s")
    else:
        say(f"1/6 simulated archive already in {archive} (delete it to simulate again)")
    targets = archive / "targets.ecsv"
    if not targets.exists():
        write_target_table(archive / "truth.json", targets)

    catalog = Catalog(settings.resolved_catalog_url)
    say("2/6 ingesting the raw archive ...")
    started = time.perf_counter()
    report = ingest(
        archive / "raw",
        catalog,
        programmes=archive / "programmes.ecsv",
        targets=targets,
        progress=sys.stderr.isatty(),
        batch_size=settings.ingest_batch_size,
        workers=settings.ingest_workers,
        default_proprietary_months=settings.proprietary_months,
    )
    say(
        f"    {report.seen} files: {report.new} new, {report.unchanged} unchanged, {len(report.rejected)} rejected; "
        f"{report.observations_added} observation(s) added ({report.seconds:.1f} s)"
    )
    stage_seconds["ingest"] = time.perf_counter() - started

    reference = settings.reference_data
    naco = reference / "naco_betapic" if reference else None
    if naco is not None and (naco / "naco_betapic_cube.fits").exists():
        say("3/6 registering the real NACO L' beta Pic cube (external, calibrated) ...")
        result = register_external(
            catalog,
            naco_betapic_cube(naco),
            data_dir,
        )
        say(f"    observation {result.observation_id} ({'new' if result.created else 'already there'})")
        published = reference / "published_companions" / "orbitize_3.4.0_betaPic_Nielsen2020_tab1.csv"
        if published.exists():  # b's published orbit (2003-2018) beside the NACO epoch: one source, tested
            from .sources import read_astrometry_file, register_astrometry

            rows = read_astrometry_file(published)
            for row in rows:
                row["object_name"] = "b"
            with catalog.session() as session:
                added, updated = register_astrometry(session, "beta Pic", rows, BETA_PIC_ASTROMETRY_REFERENCE)
            say(f"    beta Pic b published astrometry: {added} epoch(s) added, {updated} already there")
    else:
        say("3/6 reference data not found: the NACO beta Pic cube is not registered (set HCDC_REFERENCE_DATA)")

    say("4/6 systematic campaign on a local dask cluster (papermill notebooks; first run takes minutes) ...")
    from .pipeline.campaign import compare_campaigns, format_duration, previous_campaign_id, reprocess

    started = time.perf_counter()
    report = reprocess(
        catalog,
        settings,
        campaign="systematic",
        executor="local",
        # every observation: IRDIS and IFS raw data (IFS through the spectral chain) and the registered NACO cube
        progress=sys.stderr.isatty(),
        announce=lambda line: say(f"    {line}"),
    )
    stage_seconds["campaign"] = time.perf_counter() - started
    counts = report.counts
    say(
        f"    {report.observations} observation(s): {counts['done']} step(s) run, {counts['up-to-date']} up to date, "
        f"{counts['failed']} failed ({report.seconds:.0f} s)"
    )
    for observation_id, step, error in report.failures:
        say(f"    FAILED observation {observation_id} {step}: {error.splitlines()[0] if error else '?'}")

    say("5/6 catalog summary")
    with catalog.session() as session:
        print(render_summary(session, url=catalog.url))
        check = compare_with_truth(session, archive / "truth.json")
        comparison = compare_campaigns(session, report.campaign_id, previous_campaign_id(session, report.campaign_id))
        from .sources import plot_source_png, sources_table
        from .tables import detections_table

        detections = detections_table(session)
        sources = sources_table(session)
        plots = []
        for row in sources:
            if row["n_epochs"] >= 2:
                try:
                    plots.append(
                        plot_source_png(
                            session, int(row["source"]), data_dir / "sources" / f"source_{row['source']}.png"
                        )
                    )
                except ValueError as exc:
                    say(f"    source {row['source']}: no plot ({exc})")
    print(check.render())
    print(comparison.render())
    if len(detections):
        vetted = (detections["snr"] >= 5) & (detections["status"] == "candidate")
        shown = detections[vetted]["target", "night", "wavelength_um", "sep_arcsec", "pa_deg", "contrast", "snr"]
        for name in ("sep_arcsec", "pa_deg", "snr"):
            shown[name].format = ".3f" if name == "sep_arcsec" else ".1f"
        shown["contrast"].format = ".2e"
        print(
            f"\ndetections above 5 sigma in campaign {report.campaign} v{report.version} (vetted: seen in both "
            f"bands, field rotation >= 1 FWHM; {int((~vetted & (detections['snr'] >= 5)).sum())} more flagged "
            f"single-band or low-rotation, see hcdc catalog detections):"
        )
        shown.pprint(max_lines=-1, max_width=-1)
    if len(sources):
        several = sources[sources["n_epochs"] >= 2]
        print(
            f"\nsources seen at two epochs or more ({len(several)} of {len(sources)}; co-moving or background when "
            f"the odds reach 100:1, see hcdc catalog sources):"
        )
        shown = several[
            "source", "target", "known_name", "status", "log10_odds", "n_epochs", "first_epoch", "last_epoch"
        ]
        for name in ("log10_odds", "first_epoch", "last_epoch"):
            shown[name].format = ".1f"
        shown.pprint(max_lines=-1, max_width=-1)
        if plots:
            print(f"background-track plots: {plots[0].parent}/source_<ID>.png")
    hcdc = Path(sys.executable).parent / "hcdc"
    print(
        f"\ncatalog: {settings.resolved_catalog_url}\narchive: {archive}\n"
        f"reports: {data_dir / 'reports' / f'campaign{report.campaign_id:04d}'} (executed notebooks + HTML)\n"
        f"try:     HCDC_DATA_DIR={data_dir} {hcdc} catalog detections --format ecsv\n"
        f"         HCDC_DATA_DIR={data_dir} {hcdc} catalog sources\n"
        f"         HCDC_DATA_DIR={data_dir} {hcdc} catalog spectra   # IFS detections, one row per channel\n"
        f"         HCDC_DATA_DIR={data_dir} {hcdc} hub start --demo-users   # JupyterHub for the PIs"
    )
    catalog.dispose()
    started = time.perf_counter()
    vo_ok = publish_to_vo(settings, vo_missing)
    stage_seconds["VO"] = time.perf_counter() - started
    total = time.perf_counter() - demo_started
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage_seconds.items())
    say(f"demo done in {format_duration(total)} ({stages}; load average {os.getloadavg()[0]:.2f})")
    return 0 if check.ok and not report.failures and vo_ok else 1


#: the example query the demo runs on its VO service and prints for the user
EXAMPLE_ADQL = (
    "SELECT o.target, o.night, d.sep_arcsec, d.sep_err_arcsec, d.pa_deg, d.contrast, d.snr "
    "FROM hcdc.detections AS d JOIN hcdc.observations AS o ON o.id = d.observation "
    "WHERE d.snr > 10 ORDER BY d.snr DESC"
)


def _vo_prerequisites() -> str | None:
    """Why the demo cannot publish to a VO service here (None: it can). Run as root, it also applies
    the pgSphere fix (:func:`hcdc.vo.ensure_pgsphere_loadable`)."""
    import shutil

    from .pgcluster import ClusterError, postgres_bin
    from .vo import VOError, ensure_pgsphere_loadable

    if shutil.which("dachs", path="/usr/bin:/bin") is None:
        return "GAVO DaCHS not installed (make system-deps as root installs python3-gavo)"
    try:
        postgres_bin("initdb")
        ensure_pgsphere_loadable(say=lambda line: say(f"    {line}"))
    except (ClusterError, VOError) as exc:
        return str(exc)
    return None


def publish_to_vo(settings, missing: str | None) -> bool:
    """6/6: publish the released catalog to the VO service, run the example ADQL query on it, say how to
    serve it. False when publishing failed (not when the machine has no DaCHS: then it says why)."""
    import subprocess
    import urllib.request

    from .pgcluster import ClusterError
    from .vo import VOError, VOInstance

    if missing:
        say(f"6/6 public VO service skipped: {missing}")
        return True
    say("6/6 public VO service (GAVO DaCHS): publishing the released catalog ...")
    instance = VOInstance(settings)
    try:
        for line in instance.setup(say=lambda line: say(f"    {line}")):
            say(f"    {line}")
        report = instance.publish(settings.resolved_catalog_url)
    except (VOError, ClusterError) as exc:
        say(f"    FAILED: {exc}")
        return False
    for line in report.lines():
        say(f"  {line}")
    server = subprocess.Popen(
        ["/usr/bin/dachs", "serve", "start", "--foreground"],
        env=instance.environment(),
        cwd=instance.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{instance.tap_url}/availability", timeout=5) as answer:
                    if b"true" in answer.read():
                        break
            except OSError:
                time.sleep(0.5)
        import pyvo

        result = pyvo.dal.TAPService(instance.tap_url).run_sync(EXAMPLE_ADQL).to_table()
    except Exception as exc:  # the demo reports it; the tests (tests/test_vo.py) hold the service to account
        say(f"    FAILED to query {instance.tap_url}: {exc}")
        return False
    finally:
        server.terminate()
        server.wait(timeout=30)
    hcdc = Path(sys.executable).parent / "hcdc"
    print(f"\nVO service (released rows only): TAP {instance.tap_url}; example ADQL query:\n  {EXAMPLE_ADQL}")
    result.pprint(max_lines=12, max_width=-1)
    print(
        f"serve it:  HCDC_DATA_DIR={settings.data_dir} {hcdc} vo serve    (then TOPCAT or pyvo on {instance.tap_url})\n"
        f"query it:  python -c \"import pyvo; print(pyvo.dal.TAPService('{instance.tap_url}')"
        f".run_sync('SELECT TOP 5 * FROM hcdc.targets').to_table())\""
    )
    return True


if __name__ == "__main__":
    sys.exit(main())
