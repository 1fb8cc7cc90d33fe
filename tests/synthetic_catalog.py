"""Synthetic catalog rows for the dashboards' tests and benchmarks — never for science.

* :func:`add_campaign_results` gives the observations of a (simulated) catalog
  a campaign with post-processing reductions, detection limits whose depth
  follows each observation's conditions, a few detections, and failures with
  a reason and an executed notebook — what the systematic pipeline will
  write, so that the dashboards can be exercised before it exists.
* :func:`generate_catalog` writes a large catalog (10,000+ observations, with
  calibrations, pre-processing summaries, limits, detections and failures)
  with bulk inserts, for first-render timings.

Every row made here is labelled (campaign description, reduction
``code_version`` ``synthetic``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import nbformat
import numpy as np
from sqlalchemy import func, insert, select

from hcdc.catalog.models import (
    Calibration,
    Campaign,
    CampaignReduction,
    Detection,
    DetectionLimit,
    DetectionLimitPoint,
    Observation,
    Product,
    Programme,
    ProgrammeMember,
    Reduction,
    Target,
    TargetAlias,
    TargetMagnitude,
    User,
)
from hcdc.catalog.registry import add_months, normalize_name
from hcdc.reports import reduction_file

SYNTHETIC = "synthetic"
SEPARATIONS = np.round(np.arange(0.10, 1.51, 0.10), 2)
POSTPROCESS_STEP = "postprocess-pca"


def limit_curve(
    separations: np.ndarray,
    seeing: float | None,
    tau0: float | None,
    filter_name: str | None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A plausible 5σ curve: deeper with separation, shallower in bad seeing and short τ0."""
    seeing = seeing if seeing and seeing > 0 else 0.8
    tau0 = tau0 if tau0 and tau0 > 0 else 4.0
    log_c = -4.1 - 2.2 * np.log10(np.asarray(separations) / 0.1) + 0.6 * np.log10(np.asarray(separations) / 0.1) ** 2
    log_c += 1.5 * np.log10(seeing / 0.7) + 0.5 * np.log10(5.0 / tau0)
    log_c += 0.15 if (filter_name or "").endswith("K12") else 0.0
    if rng is not None:
        log_c += rng.normal(0.0, 0.03, size=log_c.shape)
    return 10**log_c


def _write_notebook(path: Path, title: str, text: str, error: str | None = None) -> None:
    notebook = nbformat.v4.new_notebook()
    cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nSynthetic executed notebook (dashboards test data)."),
        nbformat.v4.new_code_cell(
            "print('parameters loaded')",
            execution_count=1,
            outputs=[nbformat.v4.new_output("stream", name="stdout", text=text + "\n")],
        ),
    ]
    if error:
        cells.append(
            nbformat.v4.new_code_cell(
                "run_step()",
                execution_count=2,
                outputs=[nbformat.v4.new_output("error", ename=error.split(":")[0], evalue=error, traceback=[error])],
            )
        )
    notebook.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


def _write_report(path: Path, title: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    items = "".join(f"<li>{line}</li>" for line in lines)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><ul>{items}</ul></body></html>"
    )


@dataclass
class CampaignRows:
    campaign_id: int
    done: list[int]
    failed: list[int]
    pending: list[int]
    limits: dict[int, int]  #: observation id -> detection limit id
    detections: dict[int, list[int]]


def add_campaign_results(
    catalog,
    data_dir: Path,
    *,
    name: str = "synthetic-campaign",
    fail: set[int] | None = None,
    pending: set[int] | None = None,
    detections_for: set[int] | None = None,
    seed: int = 0,
) -> CampaignRows:
    """A campaign over every observation of ``catalog``: post-processing done, failed or pending.

    ``fail`` / ``pending``: observation ids whose post-processing failed / has not run;
    ``detections_for``: observations with one detected companion (default: the first
    observation of each target). Files (executed notebooks, reports) go under
    ``data_dir/reports`` (:mod:`hcdc.reports`).
    """
    rng = np.random.default_rng(seed)
    fail, pending = set(fail or ()), set(pending or ())
    now = datetime.now(timezone.utc)
    with catalog.session() as session:
        campaign = Campaign(
            name=name,
            version=1,
            status="finished" if not pending else "running",
            description="Synthetic post-processing results for the dashboards' tests (not science).",
            finished_at=None if pending else now,
        )
        session.add(campaign)
        session.flush()
        observations = session.scalars(select(Observation).order_by(Observation.night, Observation.id)).all()
        if detections_for is None:
            seen, detections_for = set(), set()
            for obs in observations:
                if obs.target_id not in seen:
                    seen.add(obs.target_id)
                    detections_for.add(obs.id)
        rows = CampaignRows(campaign.id, [], [], [], {}, {})
        for index, obs in enumerate(observations):
            started = now - timedelta(hours=2) + timedelta(minutes=3 * index)
            status = "failed" if obs.id in fail else ("pending" if obs.id in pending else "done")
            error = None
            if status == "failed":
                error = (
                    "PostprocessingError: PCA needs at least 2 frames after rejection, got 0\n"
                    'Traceback (most recent call last):\n  File "postprocess.py", line 88, in run\n'
                    "    raise PostprocessingError(...)"
                )
            reduction = Reduction(
                observation_id=obs.id,
                campaign_id=campaign.id,
                step=POSTPROCESS_STEP,
                step_version="1",
                parameters={"ncomp": 10},
                code_version=SYNTHETIC,
                status=status,
                error=error,
                attempts=0 if status == "pending" else 1,
                started_at=None if status == "pending" else started,
                finished_at=None if status == "pending" else started + timedelta(seconds=40 + 20 * rng.random()),
                release_date=obs.release_date,
            )
            session.add(reduction)
            session.flush()
            # the files where the pipeline writes them (hcdc.reports), so that the dashboards serve them
            notebook, report = (
                reduction_file(data_dir, reduction, "notebook"),
                reduction_file(data_dir, reduction, "report"),
            )
            if status == "failed":
                _write_notebook(notebook, f"{POSTPROCESS_STEP} of {obs.key}", "frames: 0 usable", error=error)
            elif status == "done":
                _write_notebook(notebook, f"{POSTPROCESS_STEP} of {obs.key}", "frames: all usable")
                _write_report(report, f"Report of {obs.key}", [f"night {obs.night}", f"seeing {obs.seeing_arcsec}"])
            reduction.notebook_path = None if status == "pending" else str(notebook)
            reduction.report_path = str(report) if status == "done" else None
            session.add(CampaignReduction(campaign_id=campaign.id, reduction_id=reduction.id))
            getattr(rows, status).append(obs.id)
            if status != "done":
                continue
            contrasts = limit_curve(SEPARATIONS, obs.seeing_arcsec, obs.tau0_ms, obs.filter, rng)
            limit = DetectionLimit(
                reduction_id=reduction.id,
                observation_id=obs.id,
                sigma=5.0,
                algorithm="PCA-ADI",
                release_date=obs.release_date,
            )
            limit.points = [
                DetectionLimitPoint(sep_arcsec=float(s), contrast=float(c), throughput=0.7)
                for s, c in zip(SEPARATIONS, contrasts)
            ]
            session.add(limit)
            session.flush()
            rows.limits[obs.id] = limit.id
            if obs.id in detections_for:
                separation = 0.45 + 0.1 * (obs.id % 5)
                detection = Detection(
                    reduction_id=reduction.id,
                    observation_id=obs.id,
                    target_id=obs.target_id,
                    x_px=100.0,
                    y_px=120.0,
                    sep_arcsec=separation,
                    sep_err_arcsec=0.004,
                    pa_deg=float(30 + 17 * (obs.id % 7)),
                    pa_err_deg=0.3,
                    snr=float(8 + obs.id % 9),
                    fpf=1e-7,
                    contrast=float(
                        limit_curve(np.array([separation]), obs.seeing_arcsec, obs.tau0_ms, obs.filter)[0] * 3
                    ),
                    contrast_err=2e-7,
                    status="candidate" if obs.id % 2 else "confirmed",
                    release_date=obs.release_date,
                )
                session.add(detection)
                session.flush()
                rows.detections.setdefault(obs.id, []).append(detection.id)
    return rows


def build_simulated_catalog(
    root: Path, catalog_url: str, *, nights: int = 3, seed: int = 5, window: int = 32, fail: int = 1, pending: int = 1
) -> dict:
    """A small realistic catalog: simulated raw archive (with pixels), ingest, real pre-processing
    (reduced calibrations with measured quality numbers), then a synthetic post-processing campaign
    (:func:`add_campaign_results`) with ``fail`` failed and ``pending`` pending observations.

    Returns paths and ids: ``archive``, ``data_dir``, ``catalog_url``, ``truth`` (parsed truth.json),
    ``campaign`` (:class:`CampaignRows`), ``preprocess`` (observation id -> status).
    """
    from hcdc.catalog.db import Catalog
    from hcdc.demo import write_target_table
    from hcdc.ingest import ingest
    from hcdc.processing import preprocess_catalog_observation
    from reduction.simulator import simulate_archive

    archive = root / "archive"
    data_dir = root / "data"
    if not (archive / "truth.json").exists():
        simulate_archive(archive, nights=nights, seed=seed, window=window, ifs=False)
    truth = json.loads((archive / "truth.json").read_text())
    catalog = Catalog(catalog_url)
    try:
        ingest(
            archive / "raw",
            catalog,
            programmes=archive / "programmes.ecsv",
            targets=write_target_table(archive / "truth.json", archive / "targets.ecsv"),
        )
        with catalog.session() as session:
            ids = list(session.scalars(select(Observation.id).order_by(Observation.night, Observation.id)))
        statuses = {i: preprocess_catalog_observation(catalog, i, data_dir).status for i in ids}
        failing = set(ids[1 : 1 + fail])
        waiting = set(ids[-pending:]) if pending else set()
        campaign = add_campaign_results(catalog, data_dir, fail=failing, pending=waiting - failing)
        from hcdc.sources import link_sources

        with catalog.session() as session:  # as a campaign does at its end
            link_sources(session)
    finally:
        catalog.dispose()
    return {
        "archive": archive,
        "data_dir": data_dir,
        "catalog_url": catalog_url,
        "truth": truth,
        "campaign": campaign,
        "preprocess": statuses,
    }


# --- a large catalog -------------------------------------------------------------------------------


@dataclass
class GeneratedCatalog:
    n_observations: int
    n_nights: int
    bad_seeing_nights: list[date]
    hot_pixel_night: date
    seconds: float


def _chunks(rows: list[dict], size: int = 5000):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def generate_catalog(
    catalog,
    n_observations: int = 10_000,
    *,
    per_night: int = 8,
    seed: int = 1,
    start: date = date(2021, 1, 1),
    failed_fraction: float = 0.03,
    pending_fraction: float = 0.03,
) -> GeneratedCatalog:
    """Write ``n_observations`` synthetic SPHERE-IRDIS observations and what the dashboards read of them."""
    import time as _time

    from hcdc.ingest import ensure_instruments

    t0 = _time.perf_counter()
    rng = np.random.default_rng(seed)
    n_nights = math.ceil(n_observations / per_night)
    nights = [
        start + timedelta(days=int(d))
        for d in np.sort(rng.choice(np.arange(int(n_nights * 1.3)), size=n_nights, replace=False))
    ]
    bad = sorted(rng.choice(len(nights), size=max(1, n_nights // 150), replace=False).tolist())
    bad_nights = [nights[i] for i in bad]
    hot_night = nights[len(nights) // 2]
    instrument = "SPHERE-IRDIS"
    filters = ("DB_H23", "DB_K12")
    with catalog.session() as session:
        ensure_instruments(session)
        offset = int(session.scalar(select(func.coalesce(func.max(Observation.id), 0))) or 0)
        users = [{"username": f"pi{k:02d}", "full_name": f"PI {k}", "is_staff": False} for k in range(20)]
        users.append({"username": "staff01", "full_name": "Staff", "is_staff": True})
        session.execute(insert(User), users)
        user_ids = dict(session.execute(select(User.username, User.id)).all())
        programmes = [
            {
                "prog_id": f"1{k:02d}.C-{k:04d}(A)",
                "title": f"Synthetic survey {k}",
                "pi_name": f"PI {k}",
                "proprietary_months": 12,
            }
            for k in range(20)
        ]
        session.execute(insert(Programme), programmes)
        prog_ids = dict(session.execute(select(Programme.prog_id, Programme.id)).all())
        session.execute(
            insert(ProgrammeMember),
            [
                {"programme_id": prog_ids[p["prog_id"]], "user_id": user_ids[f"pi{k:02d}"], "role": "pi"}
                for k, p in enumerate(programmes)
            ],
        )
        targets = [
            {
                "name": f"SYN {k:04d}",
                "ra_deg": float(rng.uniform(0, 360)),
                "dec_deg": float(rng.uniform(-80, 20)),
                "parallax_mas": float(rng.uniform(5, 60)),
                "spectral_type": str(rng.choice(["A0V", "F5V", "G2V", "K1V", "M0V"])),
                "age_myr": float(rng.uniform(10, 500)),
            }
            for k in range(300)
        ]
        session.execute(insert(Target), targets)
        target_ids = dict(session.execute(select(Target.name, Target.id)).all())
        session.execute(
            insert(TargetAlias),
            [
                {"target_id": target_ids[t["name"]], "alias": t["name"], "normalized": normalize_name(t["name"])}
                for t in targets
            ],
        )
        session.execute(
            insert(TargetMagnitude),
            [{"target_id": target_ids[t["name"]], "band": "H", "mag": float(rng.uniform(4, 9))} for t in targets],
        )
        observations, conditions = [], {}
        for index in range(n_observations):
            night = nights[index // per_night]
            seeing = float(np.clip(0.72 * math.exp(rng.normal(0, 0.15)), 0.4, 1.1))
            tau0 = float(np.clip(5.5 * math.exp(rng.normal(0, 0.2)), 2.5, 10))
            if night in bad_nights:
                seeing, tau0 = seeing * 2.4, tau0 * 0.3
            filter_name = filters[index % 2]
            obs_id = offset + index + 1
            when = datetime.combine(night + timedelta(days=1), time(0, 0), tzinfo=timezone.utc) + timedelta(
                minutes=40 * (index % per_night)
            )
            target = targets[int(rng.integers(len(targets)))]["name"]
            programme = programmes[int(rng.integers(len(programmes)))]["prog_id"]
            conditions[obs_id] = (seeing, tau0, filter_name, night)
            observations.append(
                {
                    "id": obs_id,
                    "key": f"SYN/{night.isoformat()}/{obs_id}",
                    "instrument": instrument,
                    "target_id": target_ids[target],
                    "programme_id": prog_ids[programme],
                    "origin": "raw",
                    "night": night,
                    "mode": "DBI",
                    "filter": filter_name,
                    "coronagraph": "N_ALC_YJH_S",
                    "dit_s": 16.0,
                    "date_start": when,
                    "date_end": when + timedelta(minutes=35),
                    "n_science_files": 8,
                    "n_science_frames": 64,
                    "seeing_arcsec": seeing,
                    "tau0_ms": tau0,
                    "airmass": float(rng.uniform(1.0, 1.6)),
                    "wind_speed_ms": float(rng.uniform(2, 11)),
                    "release_date": add_months(night, 12),
                    "status": "complete",
                }
            )
        for chunk in _chunks(observations):
            session.execute(insert(Observation), chunk)
        calibrations = []
        for night in nights:
            for kind, dit, filter_name in (
                ("master_dark", 16.0, None),
                ("master_dark", 1.0, None),
                ("master_background", 16.0, "DB_H23"),
                ("master_flat", None, "DB_H23"),
            ):
                when = datetime.combine(night, time(20, 0), tzinfo=timezone.utc)
                if kind == "master_flat":
                    quality = {
                        "flat_rms": float(rng.normal(0.017, 0.0005)),
                        "flat_counts_adu": 21900.0,
                        "n_dead_pixels": int(rng.poisson(2)),
                    }
                else:
                    hot = int(rng.poisson(3)) + (
                        60 if night == hot_night and kind == "master_dark" and dit == 16.0 else 0
                    )
                    quality = {
                        "dark_level_adu": float(rng.normal(1000.0, 0.3)),
                        "read_noise_adu": float(rng.normal(5.7, 0.08)),
                        "n_hot_pixels": hot,
                        "n_unstable_pixels": 0,
                        "dit_s": dit,
                    }
                calibrations.append(
                    {
                        "instrument": instrument,
                        "kind": kind,
                        "night": night,
                        "dit_s": dit,
                        "filter": filter_name,
                        "date_obs": when,
                        "quality": quality,
                    }
                )
        for chunk in _chunks(calibrations):
            session.execute(insert(Calibration), chunk)
        campaign = Campaign(
            name="synthetic-large",
            version=1,
            status="running",
            description="Synthetic rows for the dashboards' first-render benchmark (not science).",
        )
        session.add(campaign)
        session.flush()
        now = datetime.now(timezone.utc)
        reduction_rows, products, limit_rows, points, detections, statuses = [], [], [], [], [], {}
        next_reduction = int(session.scalar(select(func.coalesce(func.max(Reduction.id), 0))) or 0) + 1
        next_limit = int(session.scalar(select(func.coalesce(func.max(DetectionLimit.id), 0))) or 0) + 1
        for obs in observations:
            obs_id = obs["id"]
            seeing, tau0, filter_name, night = conditions[obs_id]
            pre_id = next_reduction
            next_reduction += 1
            reduction_rows.append(
                {
                    "id": pre_id,
                    "observation_id": obs_id,
                    "campaign_id": campaign.id,
                    "step": "preprocess",
                    "step_version": "1",
                    "parameters": {},
                    "inputs": [],
                    "code_version": SYNTHETIC,
                    "status": "done",
                    "attempts": 1,
                    "started_at": now,
                    "finished_at": now + timedelta(seconds=30),
                    "release_date": obs["release_date"],
                }
            )
            products.append(
                {
                    "reduction_id": pre_id,
                    "observation_id": obs_id,
                    "kind": "cube",
                    "path": "/dev/null",
                    "sha256": "0" * 64,
                    "size_bytes": 0,
                    "release_date": obs["release_date"],
                    "meta": {
                        "n_frames": 64,
                        "n_rejected": int(rng.poisson(1.0)),
                        "centres_detector_xy": [[484.5 + float(rng.normal(0, 0.4)), 521.8 + float(rng.normal(0, 0.4))]],
                        "fwhm_px": [3.3 if filter_name == "DB_H23" else 4.3],
                        "problems": [],
                    },
                }
            )
            draw = rng.random()
            status = (
                "failed"
                if draw < failed_fraction
                else ("pending" if draw < failed_fraction + pending_fraction else "done")
            )
            post_id = next_reduction
            next_reduction += 1
            statuses[obs_id] = status
            reduction_rows.append(
                {
                    "id": post_id,
                    "observation_id": obs_id,
                    "campaign_id": campaign.id,
                    "step": POSTPROCESS_STEP,
                    "step_version": "1",
                    "parameters": {"ncomp": 10},
                    "inputs": [],
                    "code_version": SYNTHETIC,
                    "status": status,
                    "attempts": 0 if status == "pending" else 1,
                    "error": "PostprocessingError: PCA needs at least 2 frames" if status == "failed" else None,
                    "started_at": None if status == "pending" else now,
                    "finished_at": None if status == "pending" else now + timedelta(seconds=50),
                    "release_date": obs["release_date"],
                }
            )
            if status != "done":
                continue
            limit_rows.append(
                {
                    "id": next_limit,
                    "reduction_id": post_id,
                    "observation_id": obs_id,
                    "sigma": 5.0,
                    "algorithm": "PCA-ADI",
                    "release_date": obs["release_date"],
                }
            )
            for s, c in zip(SEPARATIONS, limit_curve(SEPARATIONS, seeing, tau0, filter_name, rng)):
                points.append({"limit_id": next_limit, "sep_arcsec": float(s), "contrast": float(c), "throughput": 0.7})
            next_limit += 1
            if rng.random() < 0.08:
                detections.append(
                    {
                        "reduction_id": post_id,
                        "observation_id": obs_id,
                        "target_id": obs["target_id"],
                        "x_px": 10.0,
                        "y_px": 10.0,
                        "sep_arcsec": float(rng.uniform(0.2, 1.2)),
                        "pa_deg": float(rng.uniform(0, 360)),
                        "snr": float(rng.uniform(5, 30)),
                        "contrast": float(10 ** rng.uniform(-6, -4)),
                        "status": "candidate",
                        "release_date": obs["release_date"],
                    }
                )
        for model, rows in (
            (Reduction, reduction_rows),
            (Product, products),
            (DetectionLimit, limit_rows),
            (DetectionLimitPoint, points),
            (Detection, detections),
        ):
            for chunk in _chunks(rows):
                session.execute(insert(model), chunk)
        session.execute(
            insert(CampaignReduction), [{"campaign_id": campaign.id, "reduction_id": r["id"]} for r in reduction_rows]
        )
    return GeneratedCatalog(n_observations, n_nights, bad_nights, hot_night, _time.perf_counter() - t0)
