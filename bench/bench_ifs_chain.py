#!/usr/bin/env python
"""The whole IFS chain on simulated raw frames: HD 206893 B's position and spectrum from raw to catalog.

A simulated night (``reduction.simulator``, seed 5) holds one IRDIFS observation of HD 206893 (B at
0.268", 5° of field rotation). Its raw IFS frames go through ingest, the IFS calibrations and
pre-processing and the campaign's spectral post-processing (``postprocess-spectral``, one branch of
fakes, as ``tests/test_ifs_campaign.py``), and the catalog's detection and spectrum are compared with
the simulator's truth. ``--contrast`` sets B's J-band contrast (the simulator's own, ~1.2e-5, gives a
detection at S/N ~6, whose channels are at S/N 1-2; 2e-4 gives channels at S/N 7-50, where the
spectrum's fit can be judged channel by channel).

Reported: the separation and position angle against the truth with their errors, the collapsed
contrast, and per channel the ratio to the true contrast, the pull and the S/N; the IFS observation's
steps (wall time in the campaign, science alone), the time of the whole run (simulation, ingest, both
arms' campaign) and the load average.

    .venv/bin/python bench/bench_ifs_chain.py [--contrast 2e-4] [--screenshot]

Writes bench/results/bench_ifs_chain_<contrast>.json (and, with ``--screenshot``, the browser
dashboard's figure of the spectrum, rendered by Debian's Chromium, as ifs_spectrum_<contrast>.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from hcdc.catalog.models import Detection, Observation, Reduction, SpectrumPoint  # noqa: E402
from hcdc.pipeline.campaign import load_parameters, reprocess  # noqa: E402
from reduction.simulator import catalogue, simulate_archive  # noqa: E402
from tests.test_pipeline import _setup  # noqa: E402  (ingest into a catalog, as the campaign tests do)

TARGET = "HD 206893"


def _screenshot(result: dict, path: Path) -> None:
    """The browser dashboard's spectrum figure of the found detection (as a PI sees it, from the catalog
    values in ``result``), rendered by Debian's Chromium."""
    import shutil
    import subprocess

    import pandas as pd
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from hcdc_widgets.dashboards import figures

    spectrum, found = result["spectrum"], result["found"]
    rows = pd.DataFrame(
        {
            "detection_id": 1,
            "wavelength_um": spectrum["wavelength_um"],
            "contrast": spectrum["contrast"],
            "contrast_err": spectrum["contrast_err"],
            "snr": spectrum["snr"],
        }
    )
    frame = pd.DataFrame(
        [
            {
                "id": 1,
                "night": found["night"],
                "sep_arcsec": found["sep_arcsec"],
                "pa_deg": found["pa_deg"],
                "status": found["status"],
            }
        ]
    )
    fig = figures.spectra_figure(rows, frame, f"{TARGET}: catalog spectrum (SPHERE IFS, simulated raw frames)")
    html = path.with_suffix(".html")
    html.write_text(file_html(fig, INLINE, "spectrum"))
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={path}",
            "--window-size=760,560",
            f"file://{html}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    html.unlink()


def run(contrast: float | None, root: Path) -> dict:
    if contrast is not None:  # B brighter (or fainter) than the simulator's own
        target = catalogue.TARGETS[TARGET]
        companion = dataclasses.replace(target.companions[0], contrast_j=contrast)
        catalogue.TARGETS[TARGET] = dataclasses.replace(target, companions=(companion,))
    start = time.perf_counter()
    simulate_archive(root / "archive", nights=1, seed=5, window=128, ifs_window=1024)
    url = f"sqlite:///{root / 'catalog.sqlite'}"
    catalog, settings = _setup(root / "archive", url, root / "data")
    params = load_parameters()
    params["postprocess-spectral"].update(nbranch=1)
    params["postprocess"].update(confirm_with="")
    report = reprocess(
        catalog, settings, campaign="ifs", executor="serial", parameters=params, query=f"target={TARGET}"
    )
    seconds = time.perf_counter() - start
    truth = json.loads((root / "archive" / "truth.json").read_text())
    entry = next(e for e in truth["observations"] if e["instrument"] == "SPHERE-IFS")
    true = entry["companions"][0]
    order = np.argsort(entry["wavelengths_um"])
    true_contrast = np.asarray(true["contrast"], float)[order]
    east, north = (
        true["separation_arcsec"] * np.sin(np.deg2rad(true["pa_deg"])),
        true["separation_arcsec"] * np.cos(np.deg2rad(true["pa_deg"])),
    )
    with catalog.session() as session:
        observation = session.scalar(select(Observation).where(Observation.instrument == "SPHERE-IFS"))
        detections = session.scalars(select(Detection).where(Detection.observation_id == observation.id)).all()
        # the IFS observation's cost: each step's wall time in the campaign and its science alone
        steps = {
            s.step: {"wall_s": round(s.seconds, 1), "status": s.status}
            for r in report.results
            if r.observation_id == observation.id
            for s in r.steps
        }
        for reduction in session.scalars(select(Reduction).where(Reduction.observation_id == observation.id)):
            if reduction.step in steps and reduction.science_seconds is not None:
                steps[reduction.step]["science_s"] = round(reduction.science_seconds, 1)

        def distance(d):
            return float(
                np.hypot(
                    d.sep_arcsec * np.sin(np.deg2rad(d.pa_deg)) - east,
                    d.sep_arcsec * np.cos(np.deg2rad(d.pa_deg)) - north,
                )
            )

        out = {
            "contrast_j": contrast if contrast is not None else "simulator's",
            "truth": {
                "sep_arcsec": true["separation_arcsec"],
                "pa_deg": true["pa_deg"],
                "mean_contrast": float(true_contrast.mean()),
            },
            "detections": len(detections),
            "failures": [str(f) for f in report.failures],
            "ifs_steps": steps,
            "seconds": round(seconds, 1),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        if not detections:
            return out
        found = min(detections, key=distance)
        points = session.scalars(
            select(SpectrumPoint).where(SpectrumPoint.detection_id == found.id).order_by(SpectrumPoint.wavelength_um)
        ).all()
        measured = np.array([p.contrast for p in points])
        errors = np.array([p.contrast_err for p in points])
        snr = np.array([p.snr for p in points])
        out["found"] = {
            "distance_mas": round(1000 * distance(found), 2),
            "sep_arcsec": round(found.sep_arcsec, 5),
            "sep_err_arcsec": round(found.sep_err_arcsec, 5),
            "pa_deg": round(found.pa_deg, 3),
            "pa_err_deg": round(found.pa_err_deg, 3),
            "snr": round(found.snr, 2),
            "status": found.status,
            "night": str(observation.night),
            "note": found.note,
            "contrast": found.contrast,
            "contrast_err": found.contrast_err,
        }
        bright = snr >= 10
        ratio = measured / true_contrast
        pull = (measured - true_contrast) / errors
        out["spectrum"] = {
            "wavelength_um": [round(p.wavelength_um, 4) for p in points],
            "contrast": [float(v) for v in measured],
            "contrast_err": [float(v) for v in errors],
            "true_contrast": [float(v) for v in true_contrast],
            "ratio_to_truth": [round(float(v), 3) for v in ratio],
            "pull": [round(float(v), 2) for v in pull],
            "snr": [round(float(v), 1) for v in snr],
            "bright_channels": int(bright.sum()),
            "bright_within_10pc": int((np.abs(ratio[bright] - 1) <= 0.10).sum()),
            "others_within_3sigma": f"{int((np.abs(pull[~bright]) <= 3).sum())}/{int((~bright).sum())}",
            "pull_mean": round(float(pull.mean()), 2),
            "pull_std": round(float(pull.std(ddof=1)), 2),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contrast", type=float, default=None, help="B's J-band contrast (default: the simulator's)")
    parser.add_argument("--screenshot", action="store_true", help="bench/results/ifs_spectrum_<contrast>.png")
    parser.add_argument(
        "--screenshot-only", action="store_true", help="the figure from the last run's JSON, without running"
    )
    args = parser.parse_args(argv)
    name = "default" if args.contrast is None else f"{args.contrast:g}"
    out = REPO / "bench" / "results" / f"bench_ifs_chain_{name}.json"
    picture = REPO / "bench" / "results" / f"ifs_spectrum_{name}.png"
    if args.screenshot_only:
        _screenshot(json.loads(out.read_text()), picture)
        return 0
    with tempfile.TemporaryDirectory(prefix="hcdc-ifs-chain-") as tmp:
        result = run(args.contrast, Path(tmp))
    print(json.dumps(result, indent=1))
    if args.screenshot and "spectrum" in result:
        _screenshot(result, picture)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
