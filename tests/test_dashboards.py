"""Dashboards without a browser: outliers, thresholds, the simulator's degraded nights, access, exports.

The monitoring must flag the nights the simulator degraded — bad seeing, and a
hot-pixel burst in a dark measured by the real pre-processing calibrations —
and no other. The catalog browser's queries show only what hcdc.access lets a
user see (SQLite and PostgreSQL, with row-level security on the latter).
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import ipywidgets as w
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from sqlalchemy import select

from hcdc.access import Principal, principal_for
from hcdc.catalog import Catalog
from hcdc.catalog.models import Calibration, DetectionLimit, DetectionLimitPoint, Observation
from hcdc.dashboards import exports
from hcdc.dashboards.config import METRICS, Baseline, DashboardSettings, Rule, reload_dashboard_settings
from hcdc.dashboards.context import Viewer
from hcdc.dashboards.monitoring import build_monitoring, diagnose
from hcdc.dashboards.outliers import evaluate_nights
from hcdc.dashboards.queries import (
    NO_CAMPAIGN,
    Filters,
    campaign_reductions,
    contrast_at,
    observations_frame,
    target_detections,
    target_limits,
    target_observations,
    targets_frame,
)
from hcdc.dashboards.reference import load_curves
from hcdc_widgets.dashboards import page

from .access_world import build_world
from .test_dashboards_support import simulated_catalog

STAFF = Principal(username="staff", is_staff=True)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    return simulated_catalog(tmp_path_factory)


# --- outliers ------------------------------------------------------------------------------------


def _series(values, start=date(2024, 1, 1)):
    return pd.DataFrame(
        {
            "night": [start + timedelta(days=i) for i in range(len(values))],
            "instrument": "SPHERE-IRDIS",
            "seeing_arcsec": values,
        }
    )


def test_rolling_baseline_flags_only_the_outlier_night():
    values = [0.70, 0.75, 0.68, 0.72, 1.60, 0.74, 0.69, 0.71]
    verdicts = evaluate_nights(
        _series(values),
        "seeing_arcsec",
        METRICS["seeing_arcsec"],
        Rule(n_sigma=3, min_relative=0.3, min_absolute=0.2),
        Baseline(nights=5, min_nights=2),
    )
    flagged = verdicts[verdicts["flagged"]]
    assert list(flagged["night"]) == [date(2024, 1, 5)]
    # the first nights have no baseline: no verdict at all, not a false alarm
    assert list(verdicts["basis"][:2]) == ["none", "none"]
    # the night after the outlier is judged against a median that the outlier does not drag
    after = verdicts[verdicts["night"] == date(2024, 1, 6)].iloc[0]
    assert after["baseline"] == pytest.approx(0.715, abs=0.02) and not after["flagged"]
    # low is bad for the coherence time: a long tau0 is never flagged
    tau0 = pd.DataFrame(
        {"night": _series(values)["night"], "instrument": "X", "tau0_ms": [5.0, 5.2, 4.9, 5.1, 15.0, 1.0, 5.0, 5.0]}
    )
    verdicts = evaluate_nights(
        tau0, "tau0_ms", METRICS["tau0_ms"], Rule(n_sigma=3, min_relative=0.3), Baseline(nights=3, min_nights=2)
    )
    assert list(verdicts[verdicts["flagged"]]["night"]) == [date(2024, 1, 6)]


def test_thresholds_come_from_validated_configuration(tmp_path, monkeypatch):
    config = tmp_path / "dashboards.yaml"
    config.write_text(
        "baseline: {nights: 15, min_nights: 4}\nrules:\n  seeing_arcsec: {n_sigma: 9}\n"
        "contrast_separations_arcsec: [0.2, 0.4, 0.8]\n"
    )
    monkeypatch.setenv("HCDC_DASHBOARDS_CONFIG", str(config))
    monkeypatch.setenv("HCDC_DASHBOARDS_RULES__N_HOT_PIXELS__MIN_ABSOLUTE", "25")
    settings = reload_dashboard_settings()
    try:
        assert settings.baseline.nights == 15 and settings.baseline.min_nights == 4
        # a rule given partly keeps its metric's own defaults
        assert settings.rules.seeing_arcsec.n_sigma == 9 and settings.rules.seeing_arcsec.min_relative == 0.5
        assert settings.rules.n_hot_pixels.min_absolute == 25 and settings.rules.n_hot_pixels.min_relative == 1.0
        assert settings.contrast_separations_arcsec == [0.2, 0.4, 0.8]
        config.write_text("rules:\n  seeing_arcsec: {n_sigma: -1}\n")
        with pytest.raises(ValueError, match="n_sigma"):
            reload_dashboard_settings()
        config.write_text("rulez: {}\n")
        with pytest.raises(ValueError, match="rulez"):
            reload_dashboard_settings()
    finally:
        monkeypatch.delenv("HCDC_DASHBOARDS_CONFIG")
        monkeypatch.delenv("HCDC_DASHBOARDS_RULES__N_HOT_PIXELS__MIN_ABSOLUTE")
        reload_dashboard_settings()
    schema = DashboardSettings.model_json_schema()
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert all(prop.get("description") for prop in schema["$defs"]["Rule"]["properties"].values())


def test_contrast_interpolation_is_log_linear_and_never_extrapolates():
    seps, contrasts = [0.1, 0.2, 0.4], [1e-3, 1e-4, 1e-5]
    assert contrast_at(seps, contrasts, 0.2) == pytest.approx(1e-4)
    assert contrast_at(seps, contrasts, 0.3) == pytest.approx(10**-4.5)
    assert np.isnan(contrast_at(seps, contrasts, 0.5)) and np.isnan(contrast_at(seps, contrasts, 0.05))
    assert np.isnan(contrast_at([], [], 0.25))


def test_diagnosis_answers_atmosphere_or_instrument():
    assert diagnose({"atmosphere", "performance"}).startswith("atmosphere")
    assert diagnose({"performance"}).startswith("instrument suspected")
    assert diagnose({"detector"}) == "detector"
    assert diagnose({"atmosphere", "detector"}) == "atmosphere and detector"


# --- the simulator's degraded nights -----------------------------------------------------------------


def test_monitoring_flags_exactly_the_nights_the_simulator_degraded(simulated):
    truth = simulated["truth"]
    bad_seeing = {date.fromisoformat(n) for n in truth["bad_seeing_nights"]}
    burst_sequences = truth["hot_pixel_burst"]
    assert bad_seeing and burst_sequences, "the simulator was expected to degrade a night and a dark"
    burst = (
        {s["seq_id"]: s for s in truth["calibration_sequences"]}
        if isinstance(truth["calibration_sequences"], list)
        else truth["calibration_sequences"]
    )
    burst_nights = {date.fromisoformat(burst[s]["night"]) for s in burst_sequences}
    burst_dits = {float(d) for s in burst_sequences for d in burst[s]["dits"]}

    catalog = Catalog(simulated["catalog_url"])
    try:
        with catalog.session() as session:
            data = build_monitoring(session, STAFF)
            # the hot-pixel numbers are measured: calibrations rows written by the real pre-processing
            darks = session.scalars(select(Calibration).where(Calibration.kind == "master_dark")).all()
    finally:
        catalog.dispose()
    verdicts = data.verdicts
    flagged = verdicts[verdicts["flagged"]]
    assert set(data.flagged_nights) == bad_seeing | burst_nights, data.flagged.to_dict("records")
    seeing = flagged[flagged["metric"] == "seeing_arcsec"]
    assert set(seeing["night"]) == bad_seeing
    hot = flagged[flagged["metric"] == "n_hot_pixels"]
    assert set(hot["night"]) == burst_nights
    assert set(hot["kind"]) == {"master_dark"} and {float(d) for d in hot["dit_s"]} <= burst_dits
    measured = [d for d in darks if d.night in burst_nights and d.dit_s in burst_dits]
    assert max(d.quality["n_hot_pixels"] for d in measured) == pytest.approx(float(hot["value"].max()))
    others = [d.quality["n_hot_pixels"] for d in darks if d.night not in burst_nights]
    assert hot["value"].max() > 5 * max(others)
    # every night was judged that could be (the archival night starts the series)
    judged = set(verdicts.loc[(verdicts["metric"] == "seeing_arcsec") & (verdicts["basis"] == "previous"), "night"])
    nights = {date.fromisoformat(n["night"]) for n in truth["nights"]}
    assert judged == nights - {min(nights)} - {sorted(nights)[1]}
    diagnosis = data.flagged.set_index("night")["diagnosis"]
    assert all(diagnosis[n].startswith("atmosphere") for n in bad_seeing)


def test_monitoring_contrast_is_the_catalog_curve_at_the_separations(simulated):
    catalog = Catalog(simulated["catalog_url"])
    try:
        with catalog.session() as session:
            frame = observations_frame(session, STAFF)
            limits = session.scalars(select(DetectionLimit)).all()
            expected = {}
            for limit in limits:
                points = session.scalars(
                    select(DetectionLimitPoint)
                    .where(DetectionLimitPoint.limit_id == limit.id)
                    .order_by(DetectionLimitPoint.sep_arcsec)
                ).all()
                seps = np.array([p.sep_arcsec for p in points])
                logc = np.log10([p.contrast for p in points])
                expected[limit.observation_id] = (10 ** np.interp(0.25, seps, logc), 10 ** np.interp(0.5, seps, logc))
    finally:
        catalog.dispose()
    assert len(expected) == frame["contrast_0p25"].notna().sum() >= 5
    for _, row in frame.iterrows():
        if row["id"] in expected:
            assert row["contrast_0p25"] == pytest.approx(expected[row["id"]][0], rel=1e-9)
            assert row["contrast_0p50"] == pytest.approx(expected[row["id"]][1], rel=1e-9)
        else:
            assert np.isnan(row["contrast_0p25"])


def test_filters_restrict_observations_and_calibrations(simulated):
    catalog = Catalog(simulated["catalog_url"])
    try:
        with catalog.session() as session:
            everything = observations_frame(session, STAFF)
            k12 = observations_frame(session, STAFF, Filters(filter="DB_K12"))
            late = build_monitoring(session, STAFF, Filters(night_from=date(2026, 6, 2)))
    finally:
        catalog.dispose()
    assert 0 < len(k12) < len(everything) and set(k12["filter"]) == {"DB_K12"}
    assert min(late.observations["night"]) >= date(2026, 6, 2)
    assert min(late.calibrations["night"]) >= date(2026, 6, 2)


# --- access: the browser shows what the user may see ------------------------------------------------


@pytest.fixture
def world(catalog, tmp_path):
    return build_world(catalog, tmp_path, tmp_path / "data")


def test_browser_queries_show_only_what_the_user_may_see(catalog, world):
    from hcdc.dashboards.context import reader_session

    targets = {letter: world.target[letter] for letter in "ABC"}
    with catalog.session() as session:  # the owner's view: ids of every target
        target_ids = {
            letter: session.scalar(select(Observation.target_id).where(Observation.id == world.observation[letter]))
            for letter in "ABC"
        }
    expectations = {"alice": "AC", "dave": "AC", "bob": "BC", "carol": "C", "stranger": "C", "sam": "ABC"}
    for user, letters in expectations.items():
        with catalog.session() as session:
            principal = principal_for(session, user)
        with reader_session(catalog, principal) as session:
            listed = targets_frame(session, principal)
            assert set(listed["name"]) == {targets[x] for x in letters}, user
            obs = observations_frame(session, principal)
            assert set(obs["id"]) == {world.observation[x] for x in letters}, user
            reductions = campaign_reductions(session, principal, None)
            assert set(reductions["observation_id"]) == {world.observation[x] for x in letters}, user
            outside = campaign_reductions(session, principal, NO_CAMPAIGN)
            assert set(outside["observation_id"]) == set(reductions["observation_id"]), user
            monitoring = build_monitoring(session, principal)
            assert set(monitoring.observations["id"]) == {world.observation[x] for x in letters}, user
            for letter in "ABC":
                target_id = target_ids[letter]
                shown = letter in letters
                assert (len(target_observations(session, principal, target_id)) > 0) == shown, (user, letter)
                assert (len(target_detections(session, principal, target_id)) > 0) == shown, (user, letter)
                limits, points = target_limits(session, principal, target_id)
                assert (len(limits) > 0) == shown and (len(points) > 0) == shown, (user, letter)


def test_exports_round_trip_with_units(catalog, world):
    from hcdc.dashboards.context import reader_session

    with catalog.session() as session:
        principal = principal_for(session, "alice")
    with catalog.session() as session:
        target_id = session.scalar(select(Observation.target_id).where(Observation.id == world.observation["A"]))
    with reader_session(catalog, principal) as session:
        detections = target_detections(session, principal, target_id)
        limits = target_limits(session, principal, target_id)
        observations = exports.selection_observations_table(session, [world.observation["A"]], {"target": "x"})
    from hcdc import access
    from hcdc.catalog.models import Detection
    from hcdc.sources import link_sources, source_rows

    with catalog.session() as session:
        link_sources(session)
    with reader_session(catalog, principal) as session:
        sources = source_rows(session, access.visibility_filter(Detection, principal))
    tables = {
        "detections": exports.detections_table(detections, {}),
        "limits": exports.limits_table(*limits, {}),
        "observations": observations,
        "sources": exports.sources_table(sources, {}),
    }
    for name, table in tables.items():
        for fmt in ("csv", "ecsv", "votable"):
            data = exports.serialise(table, fmt)
            back = Table.read(
                io.BytesIO(data), format={"csv": "ascii.csv", "ecsv": "ascii.ecsv", "votable": "votable"}[fmt]
            )
            assert len(back) == len(table) > 0, (name, fmt)
            if fmt != "csv":
                column = {
                    "detections": "sep_arcsec",
                    "limits": "sep_arcsec",
                    "observations": "seeing_arcsec",
                    "sources": "sep_arcsec",
                }[name]
                assert str(back[column].unit) == "arcsec", (name, fmt)
    assert list(tables["detections"]["snr"]) == [7.5]
    assert exports.file_name("beta Pic/obs", "votable") == "beta_Pic_obs.vot.xml"


# --- pages in-process: clear messages on empty, one-observation and failed catalogs ------------------


def _texts(widget) -> str:
    out = []
    if isinstance(widget, w.HTML):
        out.append(widget.value)
    for child in getattr(widget, "children", ()):
        out.append(_texts(child))
    return "\n".join(out)


def test_pages_explain_an_empty_catalog(tmp_path):
    catalog = Catalog(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        viewer = Viewer(mode="standalone", username="staff (standalone)", all_rows=True)
        texts = {
            name: _texts(page(name, viewer=viewer, catalog=catalog).widget())
            for name in ("monitoring", "pipeline", "browser")
        }
    finally:
        catalog.dispose()
    assert all("hcdc-error" not in text for text in texts.values()), texts
    assert "no observation yet" in texts["monitoring"]
    assert "No campaign has been run" in texts["pipeline"]
    assert "no observation you may see" in texts["browser"]


def test_pages_without_identity_show_no_data(tmp_path, monkeypatch):
    monkeypatch.delenv("HCDC_DASHBOARDS_STANDALONE", raising=False)
    import hcdc.dashboards.context as context

    monkeypatch.setattr(context, "_current", None)
    text = _texts(page("browser").widget())
    assert "does not know who is looking" in text and "hcdc-table" not in text


def test_reference_curves_are_read_and_converted(reference_data):
    curves, problems = load_curves(reference_data, DashboardSettings().reference_curves)
    assert not problems and len(curves) == 4
    vigan = next(c for c in curves if c.file == "SPHERE_Vigan.txt")
    # SOURCES.md: 0.5" 16.3 mag
    index = int(np.argmin(abs(vigan.separations_arcsec - 0.5)))
    assert vigan.contrasts[index] == pytest.approx(10 ** (-0.4 * 16.3))
    missing, problems = load_curves(Path("/nonexistent"), DashboardSettings().reference_curves)
    assert not missing and "HCDC_REFERENCE_DATA" in problems[0]


def test_hub_config_registers_the_dashboards_service():
    from hcdc.hub import DEFAULT_CONFIG, hub_traits, load_hub_config

    traits = hub_traits(load_hub_config(DEFAULT_CONFIG, "local"))
    services = {s["name"]: s for s in traits["JupyterHub"]["services"]}
    dashboards = services["hcdc-dashboards"]
    assert dashboards["command"][2:5] == ["hcdc.dashboards", "serve", "--hub"]
    # the hub YAML's kernel limits reach the service's command line
    assert "--max-kernels-per-user=3" in dashboards["command"] and "--kernel-idle-minutes=10.0" in dashboards["command"]
    assert dashboards["url"].startswith("http://127.0.0.1:") and dashboards["oauth_no_confirm"] is True
    assert "HCDC_CATALOG_URL" in dashboards["environment"]
    assert "access:services!service=hcdc-dashboards" in traits["JupyterHub"]["load_roles"][0]["scopes"]
    assert traits["JupyterHub"]["services"][0]["name"] == "hcdc-catalog"


def test_a_long_history_of_limits_keeps_the_newest_in_colour_and_every_curve_on_the_plot():
    """Twelve limits: the ten newest have a colour, a legend entry and a source each; the two earlier
    ones are one grey multi-line whose rows are exactly those two curves, points in order."""
    from bokeh.models import ColumnDataSource, MultiLine

    from hcdc_widgets.dashboards import figures

    nights = [date(2020, 1, 1) + timedelta(days=30 * k) for k in range(12)]
    limits = pd.DataFrame(
        {
            "limit_id": list(range(101, 113)),
            "observation": [f"OBS/{k}" for k in range(12)],
            "night": nights,
            "algorithm": ["pca"] * 12,
            "sigma": [5.0] * 12,
        }
    )
    separations = [0.1, 0.2, 0.4]
    points = pd.DataFrame(
        [(101 + k, s, 1e-4 * (k + 1) / (i + 1)) for k in range(12) for i, s in enumerate(separations)],
        columns=["limit_id", "sep_arcsec", "contrast"],
    )
    fig = figures.contrast_curves_figure(limits, points, pd.DataFrame(), [], "T: limits")
    sources = {m.name: m for m in fig.select({"type": ColumnDataSource}) if m.name}
    coloured = sorted(int(name.split("-")[1]) for name in sources if name.startswith("limit-"))
    assert coloured == list(range(103, 113))  # the ten newest nights
    earlier = sources["earlier-limits"]
    assert earlier.data["limit_id"] == [101, 102] and earlier.data["key"] == ["OBS/0", "OBS/1"]
    assert earlier.data["xs"] == [separations, separations]
    assert earlier.data["ys"][1] == pytest.approx([2e-4, 1e-4, 2e-4 / 3])
    assert len([r for r in fig.renderers if isinstance(r.glyph, MultiLine)]) == 1  # one renderer for both
    labels = [item.label["value"] for item in fig.legend[0].items]
    assert labels[0] == "2 earlier limit(s)" and len(labels) == 11
    few = figures.contrast_curves_figure(limits.iloc[-3:], points, pd.DataFrame(), [], "T")
    assert not [m for m in few.select({"type": ColumnDataSource}) if m.name == "earlier-limits"]


# --- level of detail: above max_plot_points observations, the monitoring plots show nights ------------


def _bokeh_sources(html_payload: str) -> dict[str, dict[str, list]]:
    """The named ColumnDataSources of a page's bokeh document (``embed.document_html``'s payload), decoded."""
    import base64
    import gzip
    import json
    import re

    text = re.search(r'<script type="application/json">(.*)</script>', html_payload, re.S).group(1)
    document = next(iter(json.loads(text.replace("<\\/", "</"))["docs_json"].values()))
    found: dict[str, dict[str, list]] = {}

    def value(entry):
        if isinstance(entry, dict) and entry.get("type") == "ndarray":
            raw = entry["array"]
            if isinstance(raw, dict) and raw.get("type") == "bytes":
                data = base64.b64decode(raw["data"])
                if data[:2] == b"\x1f\x8b":  # bokeh gzips large arrays
                    data = gzip.decompress(data)
                return np.frombuffer(data, dtype=entry["dtype"]).tolist()
            return list(raw)
        return list(entry)

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") == "ColumnDataSource" and node.get("attributes", {}).get("name"):
                found[node["attributes"]["name"]] = {k: value(v) for k, v in node["attributes"]["data"]["entries"]}
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(document)
    return found


def test_monitoring_plots_nights_above_max_plot_points(tmp_path):
    """A selection larger than ``max_plot_points`` is drawn one point per night: the night's median seeing
    and its range, against the catalog's own values, red on the generator's bad-seeing nights; the page
    says so; a smaller selection (or a larger limit) draws every observation."""
    from .synthetic_catalog import generate_catalog

    catalog = Catalog(f"sqlite:///{tmp_path / 'lod.sqlite'}")
    try:
        generated = generate_catalog(catalog, 400, seed=3)
        with catalog.session() as session:
            rows = session.execute(select(Observation.night, Observation.seeing_arcsec)).all()
        catalog_seeing = pd.DataFrame(rows, columns=["night", "seeing"]).groupby("night")["seeing"]
        viewer = Viewer(mode="standalone", username="staff (standalone)", all_rows=True)

        nightly = page("monitoring", viewer=viewer, catalog=catalog, settings=DashboardSettings(max_plot_points=300))
        nightly.widget()
        assert nightly.problem is None
        sources = _bokeh_sources(nightly.plots.value)
        assert "observations" not in sources
        nights = sources["nights"]
        assert len(nights["night"]) == generated.n_nights == catalog_seeing.ngroups
        assert sum(nights["n_observations"]) == 400
        by_night = {n: i for i, n in enumerate(nights["night"])}
        for night, values in catalog_seeing:
            i = by_night[night.isoformat()]
            assert nights["seeing_arcsec"][i] == pytest.approx(values.median(), rel=1e-12)
            assert nights["seeing_arcsec_min"][i] == pytest.approx(values.min(), rel=1e-12)
            assert nights["seeing_arcsec_max"][i] == pytest.approx(values.max(), rel=1e-12)
        red = {night for night, flag in zip(nights["night"], nights["seeing_arcsec_flag"]) if flag}
        assert {n.isoformat() for n in generated.bad_seeing_nights} <= red
        assert len(red) <= len(generated.bad_seeing_nights) + 1  # nothing else stands out in seeing
        assert "one point per night" in nightly.summary.value and "400 observations" in nightly.summary.value

        every = page("monitoring", viewer=viewer, catalog=catalog, settings=DashboardSettings(max_plot_points=400))
        every.widget()
        sources = _bokeh_sources(every.plots.value)
        assert "nights" not in sources and len(sources["observations"]["key"]) == 400
        assert "one point per night" not in every.summary.value
    finally:
        catalog.dispose()
