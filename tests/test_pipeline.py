"""The systematic pipeline: campaigns of papermill steps on dask, against the simulator's truth."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from sqlalchemy import func, select

from hcdc.catalog import Catalog
from hcdc.catalog.models import CampaignReduction, Detection, DetectionLimit, Observation, RawFile, Reduction
from hcdc.ingest import ingest
from hcdc.pipeline.campaign import load_parameters, reprocess
from hcdc.settings import Settings

FAST = {
    "postprocess": {
        "subtraction": {"ncomp": 4},
        # no speckle injections: these tests are about the campaign (the error budget has its own tests)
        "characterisation": {"ncomp": 4, "n_injections": 0},
        "max_characterised": 3,
        "confirm_with": "",  # the campaign's ANDROMEDA is tested once, in the truth test
    }
}


@pytest.fixture
def archive(pipeline_archive):
    """One recent night: three IRDIS observations with companions (conftest: simulated once per run)."""
    return pipeline_archive


def _parameters(tmp_path, overrides=FAST) -> dict:
    path = tmp_path / "params.yaml"
    import yaml

    path.write_text(yaml.safe_dump(overrides))
    return load_parameters(path)


def _setup(archive: Path, url: str, data: Path) -> tuple[Catalog, Settings]:
    catalog = Catalog(url)
    ingest(archive / "raw", catalog, programmes=archive / "programmes.ecsv")
    return catalog, Settings(data_dir=data, catalog_url=url)


def _science_rows(catalog: Catalog, campaign_name: str) -> list[tuple]:
    """The campaign's detections and limits, row by row, without ids and times."""
    from hcdc.tables import detections_table, latest_campaign, limits_table

    with catalog.session() as session:
        campaign = latest_campaign(session, campaign_name)
        detections = detections_table(session, campaign)
        limits = limits_table(session, campaign)
    rows = [
        (
            "d",
            r["observation_key"],
            r["wavelength_um"],
            round(float(r["sep_arcsec"]), 6),
            round(float(r["pa_deg"]), 4),
            round(float(r["snr"]), 4),
        )
        for r in detections
    ]
    rows += [
        (
            "l",
            r["observation_key"],
            r["wavelength_um"],
            round(float(r["sep_arcsec"]), 6),
            float(f"{float(r['contrast']):.6g}"),
        )
        for r in limits
    ]
    return sorted(rows)


def test_campaign_finds_the_injected_companions(archive, tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    catalog, settings = _setup(archive, url, tmp_path / "data")
    with_andromeda = {"postprocess": dict(FAST["postprocess"], confirm_with="andromeda")}
    params = _parameters(tmp_path, with_andromeda)
    report = reprocess(catalog, settings, campaign="truth", executor="local", parameters=params)
    assert not report.failures, report.failures
    truth = json.loads((archive / "truth.json").read_text())

    found = expected = false = 0
    with catalog.session() as session:
        for entry in truth["observations"]:
            observation = session.scalar(
                select(Observation).where(
                    Observation.ob_id == entry["ob_id"], Observation.instrument == entry["instrument"]
                )
            )
            reduction = session.scalar(
                select(Reduction)
                .join(CampaignReduction, CampaignReduction.reduction_id == Reduction.id)
                .where(
                    CampaignReduction.campaign_id == report.campaign_id,
                    Reduction.step == "postprocess",
                    Reduction.observation_id == observation.id,
                )
            )
            assert reduction is not None and reduction.status == "done"
            assert Path(reduction.notebook_path).is_file() and Path(reduction.report_path).is_file()
            # the figures a person checks are in the executed notebook (an image, not a figure's repr)
            executed = nbformat.read(reduction.notebook_path, as_version=4)
            assert any(
                "image/png" in output.get("data", {})
                for cell in executed.cells
                if cell.cell_type == "code"
                for output in cell.get("outputs", [])
            )
            # the science time is measured apart and is part of the step's recorded time
            elapsed = (reduction.finished_at - reduction.started_at).total_seconds()
            assert 0 < reduction.science_seconds <= elapsed
            # candidates above 5 sigma; those flagged low-rotation (arc < 1 FWHM) are not detections
            detections = session.scalars(
                select(Detection).where(
                    Detection.reduction_id == reduction.id, Detection.snr >= 5, Detection.status == "candidate"
                )
            ).all()
            # the campaign's second algorithm (confirm_with: andromeda): its own limit per band, and every
            # detection says which algorithms found it; vetted ones were found by PCA
            algorithms = {
                (limit.algorithm, limit.wavelength_um)
                for limit in session.scalars(select(DetectionLimit).where(DetectionLimit.reduction_id == reduction.id))
            }
            assert algorithms == {(a, w) for a in ("pca", "andromeda") for w in entry["wavelengths_um"]}, algorithms
            assert all(d.found_by and d.found_by.split("+")[0] == "pca" for d in detections)
            scale = entry["pixel_scale_arcsec"]
            matched: set[int] = set()
            for companion in entry["companions"]:
                for band, wavelength in enumerate(entry["wavelengths_um"]):
                    limit = session.scalar(
                        select(DetectionLimit).where(
                            DetectionLimit.reduction_id == reduction.id,
                            DetectionLimit.wavelength_um == wavelength,
                            DetectionLimit.algorithm == "pca",
                        )
                    )
                    curve = [(p.sep_arcsec, p.contrast) for p in limit.points]
                    seps, values = np.array(curve).T
                    if not seps.min() <= companion["separation_arcsec"] <= seps.max():
                        continue
                    limit_here = 10 ** np.interp(companion["separation_arcsec"], seps, np.log10(values))
                    true_contrast = companion["contrast"][band]
                    if true_contrast < limit_here:
                        continue  # below this campaign's own 5-sigma limit: not required
                    expected += 1
                    tx = companion["separation_arcsec"] * np.sin(np.deg2rad(companion["pa_deg"])) / scale
                    ty = companion["separation_arcsec"] * np.cos(np.deg2rad(companion["pa_deg"])) / scale
                    near = [
                        d
                        for d in detections
                        if d.wavelength_um == wavelength
                        and np.hypot(
                            d.sep_arcsec * np.sin(np.deg2rad(d.pa_deg)) / scale - tx,
                            d.sep_arcsec * np.cos(np.deg2rad(d.pa_deg)) / scale - ty,
                        )
                        <= 1.0
                    ]
                    assert near, f"{entry['obs_id']}: {companion['name']} band {band + 1} not found"
                    best = max(near, key=lambda d: d.snr)
                    assert best.contrast == pytest.approx(true_contrast, rel=0.3), (companion["name"], band)
                    matched.update(d.id for d in near)
                    found += 1
            # anything else above 5 sigma, more than 1 FWHM (~4 px) from every true source, is false
            for d in detections:
                if d.id in matched:
                    continue
                dx = d.sep_arcsec * np.sin(np.deg2rad(d.pa_deg)) / scale
                dy = d.sep_arcsec * np.cos(np.deg2rad(d.pa_deg)) / scale
                if all(
                    np.hypot(
                        dx - c["separation_arcsec"] * np.sin(np.deg2rad(c["pa_deg"])) / scale,
                        dy - c["separation_arcsec"] * np.cos(np.deg2rad(c["pa_deg"])) / scale,
                    )
                    > 4.0
                    for c in entry["companions"]
                ):
                    false += 1
    assert expected >= 2 and found == expected
    assert false <= max(1, len(truth["observations"]) // 10), f"{false} false candidates"


def _planned_then_run(catalog, settings, **arguments):
    """``reprocess(**arguments)`` after ``hcdc reprocess --plan``'s plan of it: the plan must say what the run did."""
    from hcdc.catalog.models import Campaign
    from hcdc.pipeline.plan import plan_campaign

    with catalog.session() as session:
        campaigns = session.scalar(select(func.count()).select_from(Campaign))
        reductions = session.scalar(select(func.count()).select_from(Reduction))
    plan = plan_campaign(catalog, query=arguments.get("query"), parameters=arguments["parameters"])
    with catalog.session() as session:  # planning writes nothing
        assert session.scalar(select(func.count()).select_from(Campaign)) == campaigns
        assert session.scalar(select(func.count()).select_from(Reduction)) == reductions
    report = reprocess(catalog, settings, executor="serial", **arguments)
    outcome = {(r.observation_id, s.step): s for r in report.results for s in r.steps}
    expected = {"run": {"done", "failed"}, "no input": {"failed"}, "up-to-date": {"up-to-date"}}
    assert {p.observation_id for p in plan.observations} == {r.observation_id for r in report.results}
    for planned in plan.observations:
        if not planned.steps:  # nothing the pipeline can do: the run says why, in the same words
            skipped = [s for (i, _), s in outcome.items() if i == planned.observation_id]
            assert [s.status for s in skipped] == ["skipped"] and skipped[0].error == planned.skipped
            continue
        for step in planned.steps:
            done = outcome[(planned.observation_id, step.step)]
            allowed = expected.get(step.status, {"done", "failed", "skipped"})  # after an earlier step
            assert done.status in allowed, (planned, done)
            if step.status == "up-to-date":
                assert done.reduction_id == step.reduction_id
    return report, plan


def test_rerun_touch_and_failure_isolation(archive, undisturbed_campaign, tmp_path, monkeypatch):
    # the first run is the session's undisturbed campaign (the same parameters, archive and executor): this
    # test goes on from its catalog
    name = undisturbed_campaign.name
    catalog = Catalog(undisturbed_campaign.catalog_url)
    settings = Settings(data_dir=undisturbed_campaign.data_dir, catalog_url=undisturbed_campaign.catalog_url)
    params = _parameters(tmp_path)
    first = undisturbed_campaign  # its report's figures
    n = first.observations
    assert first.counts["done"] == 2 * n and not first.failures
    again, plan = _planned_then_run(catalog, settings, campaign=name, parameters=params)
    assert again.steps_run == 0 and again.counts["up-to-date"] == 2 * n
    assert plan.counts() == {"preprocess": {"up-to-date": n}, "postprocess": {"up-to-date": n}}
    touched = dict(params)
    touched["postprocess"] = {
        **params["postprocess"],
        "subtraction": {**params["postprocess"]["subtraction"], "ncomp": 3},
    }
    third, plan = _planned_then_run(catalog, settings, campaign=name, parameters=touched)
    steps = {(s.step, s.status) for r in third.results for s in r.steps}
    assert steps == {("preprocess", "up-to-date"), ("postprocess", "done")}
    assert third.steps_run == n
    assert plan.counts() == {"preprocess": {"up-to-date": n}, "postprocess": {"run": n}}
    # a new version of the post-processing (its science changed): exactly its reductions run again
    from reduction.postproc.pipeline import PostprocessStep

    monkeypatch.setattr(PostprocessStep, "version", PostprocessStep.version + ".1")
    one = first.observation_ids[0]  # one observation is enough to show it (and keeps the test short)
    bumped, _ = _planned_then_run(catalog, settings, campaign=name, parameters=touched, query=f"id={one}")
    # the command line's plan: the other observations' post-processing is out of date too (a new version)
    from click.testing import CliRunner

    from hcdc.cli import main
    from hcdc.settings import get_settings

    touched_file = tmp_path / "touched.yaml"
    touched_file.write_text(yaml.safe_dump(touched))
    monkeypatch.setenv("HCDC_CATALOG_URL", undisturbed_campaign.catalog_url)
    monkeypatch.setenv("HCDC_DATA_DIR", str(undisturbed_campaign.data_dir))
    get_settings(fresh=True)
    result = CliRunner().invoke(main, ["reprocess", "--campaign", name, "--plan", "--params", str(touched_file)])
    assert result.exit_code == 0, result.output
    listed = {int(line.split(",")[0]): line for line in result.stdout.splitlines()[1:]}
    assert set(listed) == set(first.observation_ids) - {one}, result.stdout  # the up-to-date one is not listed
    assert all("preprocess up-to-date" in line and "postprocess run" in line for line in listed.values())
    assert f"postprocess: run {n - 1}, up-to-date 1" in result.stderr
    assert {(s.step, s.status) for r in bumped.results for s in r.steps} == {
        ("preprocess", "up-to-date"),
        ("postprocess", "done"),
    }
    with catalog.session() as session:
        versions = {
            session.get(Reduction, s.reduction_id).step_version
            for r in bumped.results
            for s in r.steps
            if s.step == "postprocess"
        }
    assert versions == {PostprocessStep.version}
    with catalog.session() as session:
        members = session.scalar(
            select(func.count())
            .select_from(CampaignReduction)
            .where(CampaignReduction.campaign_id == first.campaign_id)
        )
        assert members >= 3 * n + 1  # the campaign keeps its history of reductions
    # a broken observation (its science files damaged on disk after ingest) fails alone, with its reason
    truth = json.loads((archive / "truth.json").read_text())
    victim = truth["observations"][0]
    broken = tmp_path / "broken"
    shutil.copytree(archive / "raw", broken / "raw")
    url2 = f"sqlite:///{tmp_path / 'broken.sqlite'}"
    catalog2 = Catalog(url2)
    ingest(broken / "raw", catalog2)
    for name in victim["files"]["science"]:
        path = broken / truth["files"][name]["path"]
        path.write_bytes(path.read_bytes()[:3000])
    settings2 = Settings(data_dir=tmp_path / "data2", catalog_url=url2)
    with catalog2.session() as session:  # the broken observation and one sound one (CI time)
        victim_id = session.scalar(select(RawFile.observation_id).where(RawFile.path.endswith(path.name)))
        sound_id = session.scalar(select(Observation.id).where(Observation.id != victim_id).order_by(Observation.id))
    assert victim_id is not None and sound_id is not None
    pair = f"id={victim_id},{sound_id}"
    report, plan = _planned_then_run(catalog2, settings2, campaign="b", parameters=params, retries=0, query=pair)
    assert plan.counts() == {"preprocess": {"run": 2}, "postprocess": {"after": 2}}
    failed = {(obs, step) for obs, step, _ in report.failures}
    assert len(failed) == 1 and next(iter(failed))[1] == "preprocess", report.failures
    assert "no readable OBJECT" in report.failures[0][2]
    assert report.counts["done"] == 2 and report.counts["skipped"] == 1  # the sound one ran both steps
    # re-ingesting notices the damaged files: the observation has no science frame left and the
    # campaign says so instead of failing again
    ingest(broken / "raw", catalog2)
    again, _ = _planned_then_run(  # (re-ingest may give the observation a new id: chosen by its target)
        catalog2,
        settings2,
        campaign="b",
        parameters=params,
        retries=0,
        query=f"target={victim['target']}",
    )
    skipped = [s for r in again.results for s in r.steps if s.status == "skipped"]
    assert any("no science frames" in (s.error or "") for s in skipped)
    assert not again.failures


def test_interrupted_campaign_resumes_to_the_same_catalog(archive, undisturbed_campaign, tmp_path):
    params_file = tmp_path / "p.yaml"
    import yaml

    params_file.write_text(yaml.safe_dump(FAST))

    url = f"sqlite:///{tmp_path / 'killed.sqlite'}"
    catalog, _settings = _setup(archive, url, tmp_path / "killed")
    env = dict(os.environ, HCDC_CATALOG_URL=url, HCDC_DATA_DIR=str(tmp_path / "killed"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hcdc.cli",
            "reprocess",
            "--campaign",
            "k",
            "--executor",
            "serial",
            "--params",
            str(params_file),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    with catalog.session() as session:
        while time.monotonic() < deadline:
            done = session.scalar(select(func.count()).select_from(Reduction).where(Reduction.status == "done"))
            if done >= 2:  # first observation finished, the second one under way
                break
            session.expire_all()
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(Reduction).where(Reduction.status == "done")) < 6
    settings = Settings(data_dir=tmp_path / "killed", catalog_url=url)
    resumed = reprocess(catalog, settings, campaign="k", executor="serial", parameters=load_parameters(params_file))
    assert resumed.counts["up-to-date"] >= 2 and not resumed.failures
    assert _science_rows(catalog, "k") == undisturbed_campaign.rows
    with catalog.session() as session:  # no leftovers of the killed run
        assert session.scalar(select(func.count()).select_from(Reduction).where(Reduction.status != "done")) == 0


def test_campaign_on_slurm(archive, tmp_path, slurm_cluster):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    catalog, _ = _setup(archive, url, tmp_path / "data")
    settings = Settings(
        data_dir=tmp_path / "data",
        catalog_url=url,
        slurm_jobs=1,
        slurm_cores=2,
        slurm_memory="6GB",
        slurm_walltime="00:30:00",
        slurm_queue="hcdc",
    )
    report = reprocess(
        catalog, settings, campaign="slurm", executor="slurm", parameters=_parameters(tmp_path), query="id=1"
    )
    assert not report.failures and report.counts["done"] == 2
    with catalog.session() as session:
        hosts = set(session.scalars(select(Reduction.host)))
    assert hosts  # the steps ran in a SLURM job on this node


def test_identical_inputs_of_two_observations_get_a_reduction_each(tmp_path):
    """The same calibrated cube registered twice (two targets, as a user may do by mistake or for a
    test): byte-identical inputs, yet each observation is reduced, with its own detections and limits,
    and the campaign comparison of a re-run reports no change."""
    from astropy.io import fits

    from .test_widgets import naco_small

    cube, angles, psf = naco_small()
    files = {}
    for name, data in (("cube", cube.astype(np.float32)), ("angles", angles), ("psf", psf)):
        files[name] = tmp_path / f"{name}.fits"
        fits.PrimaryHDU(data).writeto(files[name])
    data_dir = tmp_path / "data"
    env = {**os.environ, "HCDC_DATA_DIR": str(data_dir), "HCDC_CATALOG_URL": f"sqlite:///{data_dir / 'c.sqlite'}"}
    hcdc = [str(Path(sys.executable).parent / "hcdc")]
    for target, night in (("beta Pic", "2013-02-01"), ("beta Pic copy", "2013-02-02")):
        done = subprocess.run(
            hcdc
            + [
                "register-reduced",
                str(files["cube"]),
                "--angles",
                str(files["angles"]),
                "--psf",
                str(files["psf"]),
                "--pixel-scale",
                "0.02719",
                "--instrument",
                "NACO",
                "--target",
                target,
                "--date",
                night,
                "--filter",
                "L'",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    params = tmp_path / "params.yaml"
    import yaml

    params.write_text(
        yaml.safe_dump(
            {
                "postprocess": {
                    "subtraction": {"ncomp": 4},
                    "max_characterised": 0,
                    "characterisation": {"n_injections": 2},
                }
            }
        )
    )
    command = hcdc + [
        "reprocess",
        "--campaign",
        "twins",
        "--executor",
        "serial",
        "--params",
        str(params),
        "--steps",
        "postprocess",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    # no terminal: one line per finished observation, with its steps, the count and the time to go
    lines = [line for line in first.stderr.splitlines() if line.startswith("obs ")]
    assert len(lines) == 2 and "(beta Pic 2013-02-01 NACO): postprocess done" in lines[0], first.stderr
    assert "[1/2," in lines[0] and "to go]" in lines[0] and "[2/2," in lines[1], lines
    catalog = Catalog(env["HCDC_CATALOG_URL"], migrate=False)
    with catalog.session() as session:
        observations = session.scalars(select(Observation.id).order_by(Observation.id)).all()
        reductions = {
            o: session.scalars(
                select(Reduction).where(
                    Reduction.observation_id == o, Reduction.step == "postprocess", Reduction.status == "done"
                )
            ).all()
            for o in observations
        }
        assert len(observations) == 2
        for observation_id, rows in reductions.items():
            assert len(rows) == 1, (observation_id, rows)
            limits = session.scalar(
                select(func.count()).select_from(DetectionLimit).where(DetectionLimit.reduction_id == rows[0].id)
            )
            assert limits >= 1, observation_id  # each observation has its own detection limits
        for rows in reductions.values():  # the maps carry the reduction's id and every parameter (NCOMP, ...)
            residuals = next(p for p in rows[0].products if p.kind == "residuals")
            header = fits.getheader(residuals.path)
            assert header["HIERARCH HCDC REDUCTION_ID"] == rows[0].id
            assert header["HIERARCH HCDC PARAM SUBTRACTION.NCOMP"] == 4
            assert header["HIERARCH HCDC PARAM SUBTRACTION.ALGORITHM"] == rows[0].parameters["subtraction"]["algorithm"]
        linked = session.scalars(select(CampaignReduction.reduction_id)).all()
        assert sorted(linked) == sorted(rows[0].id for rows in reductions.values())
    catalog.dispose()
    again = subprocess.run(command + ["--new-version"], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "up to date 2" in again.stderr, again.stderr  # nothing re-run
    assert "0 of 2 observation(s) changed" in again.stdout, again.stdout


def test_campaigns_start_with_the_longest_observations(tmp_path):
    """Longest-processing-time first: last time's durations order the tasks (ties and unknowns in the middle)."""
    from datetime import date, datetime, timedelta

    from hcdc.ingest import ensure_instruments
    from hcdc.pipeline.campaign import expected_seconds, longest_first
    from hcdc.pipeline.runner import ChainTask

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    start = datetime(2026, 6, 1, 23, 0)
    durations = {
        1: {"preprocess": 5, "postprocess": 20},
        2: {"preprocess": 4, "postprocess": 70},
        3: {},
        4: {"postprocess": 2},
    }
    with catalog.session() as session:
        ensure_instruments(session)
        ids = {}
        for n in durations:
            observation = Observation(
                key=f"obs{n}",
                instrument="SPHERE-IRDIS",
                night=date(2026, 6, 1),
                status="complete",
                release_date=date(2027, 6, 1),
            )
            session.add(observation)
            session.flush()
            ids[n] = observation.id
        for n, steps in durations.items():
            for step, seconds in steps.items():
                for old, factor in ((True, 10), (False, 1)):  # an older, slower run: the newest counts
                    session.add(
                        Reduction(
                            observation_id=ids[n],
                            step=step,
                            step_version="1",
                            inputs=[],
                            status="done",
                            started_at=start,
                            finished_at=start + timedelta(seconds=seconds * factor),
                        )
                    )
        session.add(
            Reduction(
                observation_id=ids[3],
                step="postprocess",
                step_version="1",
                inputs=[],
                status="failed",
                started_at=start,
                finished_at=start + timedelta(seconds=999),
            )
        )
    with catalog.session() as session:
        costs = expected_seconds(session, list(ids.values()), ("preprocess", "postprocess"))
    catalog.dispose()
    assert costs == {ids[1]: 25.0, ids[2]: 74.0, ids[4]: 2.0}  # failed runs and unknowns have no cost
    tasks = [
        ChainTask(
            observation_id=ids[n],
            campaign_id=1,
            steps=("postprocess",),
            parameters={},
            catalog_url="",
            data_dir="",
            retries=0,
        )
        for n in (1, 2, 3, 4)
    ]
    order = [t.observation_id for t in longest_first(tasks, costs)]
    assert order == [ids[2], ids[1], ids[3], ids[4]]  # obs 3, never done, takes the median's place
    assert [t.observation_id for t in longest_first(tasks, {})] == [t.observation_id for t in tasks]


def test_a_worker_killed_mid_step_is_retried_elsewhere_and_the_catalog_is_the_same(
    archive, undisturbed_campaign, tmp_path
):
    """SIGKILL of a dask worker while it runs a step: dask reschedules the task on the other worker,
    the campaign ends without a failure, and its detections and limits equal an undisturbed run's."""
    import threading

    from hcdc.pipeline.campaign import make_cluster

    params = _parameters(tmp_path)
    catalog, settings = _setup(archive, f"sqlite:///{tmp_path / 'killed.sqlite'}", tmp_path / "killed")
    cluster = make_cluster("local", settings)
    holder: dict = {}
    try:
        pids = [nanny.process.process.pid for nanny in cluster.workers.values()]
        assert len(pids) == 2
        worker = threading.Thread(
            target=lambda: holder.update(
                report=reprocess(catalog, settings, campaign="w", executor="local", parameters=params, cluster=cluster)
            )
        )
        worker.start()
        deadline = time.monotonic() + 300
        with catalog.session() as session:
            while time.monotonic() < deadline:  # a step under way on both workers (3 observations, 2 workers)
                running = session.scalar(
                    select(func.count()).select_from(Reduction).where(Reduction.status == "running")
                )
                if running >= 2:
                    break
                session.expire_all()
                time.sleep(0.2)
        assert running >= 2, "no step started"
        os.kill(pids[0], signal.SIGKILL)
        worker.join(timeout=600)
        assert not worker.is_alive()
    finally:
        cluster.close()
    assert "report" in holder, "reprocess raised in its thread"
    report = holder["report"]
    assert not report.failures, report.failures
    assert report.counts["done"] == 2 * report.observations
    assert _science_rows(catalog, "w") == undisturbed_campaign.rows
    with catalog.session() as session:
        statuses = [r.status for r in session.scalars(select(Reduction))]
    assert statuses and set(statuses) == {"done"}, statuses  # the killed step's row was taken over, none left running


def test_campaign_draws_ardi_references_from_the_archive_never_from_the_target(archive, tmp_path):
    """ARDI beside PCA: the library comes from other targets' observations with the same set-up.

    The night has two H23 observations (two targets, two programmes) with the same coronagraph and a K12
    one. One H23 observation is made public: it serves as the other's reference, while the other,
    proprietary to another programme, never serves as its reference (its imprint would reach the first
    programme's products). So ARDI runs for one observation, with its own limit per band, and is left out
    of the other two with the reason; the products name no other observation.
    """
    from datetime import date, timedelta

    from hcdc.catalog.models import Product

    overrides = {"postprocess": dict(FAST["postprocess"], confirm_with="ardi")}
    catalog, settings = _setup(archive, f"sqlite:///{tmp_path / 'catalog.sqlite'}", tmp_path / "data")
    with catalog.session() as session:
        h23 = session.scalars(
            select(Observation)
            .where(Observation.filter == "DB_H23", Observation.origin == "raw")
            .order_by(Observation.id)
        ).all()
        assert len(h23) == 2 and h23[0].programme_id != h23[1].programme_id
        public, proprietary = h23[0].id, h23[1].id
        h23[0].release_date = date.today() - timedelta(days=1)
        assert h23[1].release_date > date.today()
    params = _parameters(tmp_path, overrides)
    report = reprocess(catalog, settings, campaign="ardi", executor="serial", parameters=params)
    assert not report.failures, report.failures
    with catalog.session() as session:
        reductions = session.scalars(
            select(Reduction).where(Reduction.step == "postprocess", Reduction.status == "done")
        ).all()
        assert len(reductions) == 3
        for reduction in reductions:
            observation = session.get(Observation, reduction.observation_id)
            algorithms = {
                limit.algorithm
                for limit in session.scalars(select(DetectionLimit).where(DetectionLimit.reduction_id == reduction.id))
            }
            entries = [i for i in reduction.inputs if i.get("kind") == "reference-library"]
            detections_meta = [p.meta or {} for p in reduction.products if p.kind.startswith("detections")]
            if observation.id == proprietary:  # the public observation is its reference
                (entry,) = entries
                sources = [session.get(Reduction, r) for r in entry["reduction_ids"]]
                assert [r.observation_id for r in sources] == [public]
                assert algorithms == {"pca", "ardi"}
            else:  # the public one: its only candidate is proprietary to another programme; K12: none at all
                assert not entries and algorithms == {"pca"}
                notes = [m.get("reference_library", "") for m in detections_meta]
                assert any("ardi not run" in n and "released or of the same programme" in n for n in notes), notes
            # the products' provenance (FITS headers) names no other observation's reduction
            for product in session.scalars(select(Product).where(Product.reduction_id == reduction.id)):
                if product.path.endswith(".fits"):
                    from astropy.io import fits

                    assert "reduction_ids" not in repr(fits.getheader(product.path))
