"""Catalog queries of the dashboards: pure functions of (session, principal, filters) → pandas.

Every query on a protected table (observations, reductions, products,
detections, detection limits) goes through :func:`hcdc.access.visibility_filter`
for the principal; calibrations are public at once (DESIGN: "headers and
calibrations are public at once"); targets and campaigns are listed only
through what is visible of them.

Times are naive UTC (what bokeh plots); nights are :class:`datetime.date`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

import numpy as np
import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from hcdc.access import Principal, visibility_filter
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
    Reduction,
    SpectrumPoint,
    Target,
    TargetAlias,
    TargetMagnitude,
)
from hcdc.tables import DETECTION_MEASUREMENTS

from .config import DashboardSettings, contrast_column, get_dashboard_settings

# --- filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What a dashboard is restricted to (None: no restriction). Nights are inclusive."""

    instrument: str | None = None
    mode: str | None = None
    filter: str | None = None
    night_from: date | None = None
    night_to: date | None = None

    def clauses(self) -> list:
        out = []
        if self.instrument:
            out.append(Observation.instrument == self.instrument)
        if self.mode:
            out.append(Observation.mode == self.mode)
        if self.filter:
            out.append(Observation.filter == self.filter)
        if self.night_from:
            out.append(Observation.night >= self.night_from)
        if self.night_to:
            out.append(Observation.night <= self.night_to)
        return out

    def calibration_clauses(self) -> list:
        """Calibrations follow the instrument and the dates (mode and filter are the science set-up's)."""
        out = []
        if self.instrument:
            out.append(Calibration.instrument == self.instrument)
        if self.night_from:
            out.append(Calibration.night >= self.night_from)
        if self.night_to:
            out.append(Calibration.night <= self.night_to)
        return out

    def describe(self) -> str:
        parts = [
            f"{name} {value}"
            for name, value in (("instrument", self.instrument), ("mode", self.mode), ("filter", self.filter))
            if value
        ]
        if self.night_from or self.night_to:
            parts.append(f"nights {self.night_from or '…'} to {self.night_to or '…'}")
        return ", ".join(parts) or "all observations"

    def with_(self, **changes: Any) -> "Filters":
        return replace(self, **changes)


def visible_observation_ids(principal: Principal, filters: Filters = Filters(), target_id: int | None = None) -> Select:
    """``SELECT id FROM observations`` that the principal may see, within the filters (and of one target)."""
    extra = [] if target_id is None else [Observation.target_id == target_id]
    return select(Observation.id).where(visibility_filter(Observation, principal), *filters.clauses(), *extra)


@dataclass(frozen=True)
class Choices:
    """The values the filters may take for a principal (from the observations they may see)."""

    instruments: tuple[str, ...]
    modes: tuple[str, ...]
    filters: tuple[str, ...]
    first_night: date | None
    last_night: date | None
    n_observations: int


def filter_choices(session: Session, principal: Principal, filters: Filters = Filters()) -> Choices:
    visible = visibility_filter(Observation, principal)
    base = [visible, *filters.clauses()]

    def distinct(column) -> tuple[str, ...]:
        return tuple(sorted(v for v in session.scalars(select(column).where(*base).distinct()) if v))

    first, last, count = session.execute(
        select(func.min(Observation.night), func.max(Observation.night), func.count(Observation.id)).where(*base)
    ).one()
    return Choices(
        distinct(Observation.instrument),
        distinct(Observation.mode),
        distinct(Observation.filter),
        first,
        last,
        int(count or 0),
    )


# --- helpers ---------------------------------------------------------------------------------------


def _naive_utc(value: datetime | None) -> datetime | None:
    """Naive UTC (SQLite returns naive datetimes, PostgreSQL aware ones)."""
    if value is None or pd.isna(value):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def naive_utc_series(values) -> pd.Series:
    """:func:`_naive_utc` of a whole column at once (datetime64; None becomes NaT)."""
    if not len(values):
        return pd.Series([], dtype="datetime64[ns]")
    return pd.Series(pd.to_datetime(pd.Series(values, dtype=object), utc=True).dt.tz_localize(None).to_numpy())


def _night_time(night: date | None) -> datetime | None:
    """A time for an observation without frames' times: local midnight at the site (~04:00 UTC next day)."""
    return None if night is None else datetime.combine(night + timedelta(days=1), time(4, 0))


def contrasts_at(separations: Iterable[float], contrasts: Iterable[float], at: Iterable[float]) -> np.ndarray:
    """Contrast of a curve at each separation of ``at``: log-linear interpolation; NaN outside the curve."""
    seps = np.asarray(separations, dtype=float)
    values = np.asarray(contrasts, dtype=float)
    at = np.asarray(at, dtype=float)
    good = np.isfinite(seps) & np.isfinite(values) & (values > 0)
    seps, values = seps[good], values[good]
    if seps.size == 0:
        return np.full(at.shape, np.nan)
    order = np.argsort(seps)
    seps, values = seps[order], values[order]
    out = 10 ** np.interp(at, seps, np.log10(values))
    out[(at < seps[0]) | (at > seps[-1])] = np.nan
    return out


def contrast_at(separations: Iterable[float], contrasts: Iterable[float], at: float) -> float:
    """Contrast of a curve at separation ``at``: log-linear interpolation; NaN outside the curve."""
    return float(contrasts_at(list(separations), list(contrasts), [at])[0])


# --- monitoring ------------------------------------------------------------------------------------

OBSERVATION_COLUMNS = (
    "id",
    "key",
    "instrument",
    "mode",
    "filter",
    "night",
    "time",
    "target",
    "programme",
    "seeing_arcsec",
    "tau0_ms",
    "airmass",
    "wind_speed_ms",
    "status",
    "release_date",
)
CUBE_COLUMNS = (
    "n_frames",
    "n_rejected",
    "rejected_fraction",
    "centre_x_px",
    "centre_y_px",
    "fwhm_px",
    "cube_reduction_id",
)


def observations_frame(
    session: Session,
    principal: Principal,
    filters: Filters = Filters(),
    settings: DashboardSettings | None = None,
    target_id: int | None = None,
) -> pd.DataFrame:
    """The visible observations within ``filters``, one row each, with what monitoring trends.

    Columns: :data:`OBSERVATION_COLUMNS`, the pre-processing summary of the latest
    done cube product (:data:`CUBE_COLUMNS`), and the achieved contrast at each
    monitored separation (``contrast_0p25``...; NaN without a detection limit)
    with ``limit_id``. ``target_id``: only that target's observations.
    """
    settings = settings or get_dashboard_settings()
    extra = [] if target_id is None else [Observation.target_id == target_id]
    query = (
        select(
            Observation.id,
            Observation.key,
            Observation.instrument,
            Observation.mode,
            Observation.filter,
            Observation.night,
            Observation.date_start,
            Target.name,
            Programme.prog_id,
            Observation.seeing_arcsec,
            Observation.tau0_ms,
            Observation.airmass,
            Observation.wind_speed_ms,
            Observation.status,
            Observation.release_date,
        )
        .outerjoin(Target, Target.id == Observation.target_id)
        .outerjoin(Programme, Programme.id == Observation.programme_id)
        .where(visibility_filter(Observation, principal), *filters.clauses(), *extra)
        .order_by(Observation.night, Observation.date_start, Observation.id)
    )
    rows = session.execute(query).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "id",
            "key",
            "instrument",
            "mode",
            "filter",
            "night",
            "date_start",
            "target",
            "programme",
            "seeing_arcsec",
            "tau0_ms",
            "airmass",
            "wind_speed_ms",
            "status",
            "release_date",
        ],
    )
    if len(frame):
        times = naive_utc_series(frame["date_start"])
        missing = times.isna().to_numpy()
        if missing.any():  # no frames' times: the night's local midnight
            times[missing] = pd.to_datetime([_night_time(n) for n in frame["night"][missing]])
        frame["time"] = times.to_numpy()
    else:
        frame["time"] = pd.Series([], dtype="datetime64[ns]")
    frame = frame.drop(columns=["date_start"])
    for column in ("seeing_arcsec", "tau0_ms", "airmass", "wind_speed_ms"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    ids = visible_observation_ids(principal, filters, target_id)
    cubes = _cube_summaries(session, principal, ids)
    for column in CUBE_COLUMNS:
        frame[column] = [cubes.get(i, {}).get(column, np.nan) for i in frame["id"]]
    limits = latest_limit_curves(session, principal, ids)
    frame["limit_id"] = [limits[i]["limit_id"] if i in limits else np.nan for i in frame["id"]]
    separations = list(settings.contrast_separations_arcsec)
    values = np.full((len(frame), len(separations)), np.nan)
    for row, i in enumerate(frame["id"]):
        curve = limits.get(i)
        if curve is not None:
            scale = settings.contrast_sigma / curve["sigma"] if curve["sigma"] else 1.0
            values[row] = contrasts_at(curve["separations"], curve["contrasts"], separations) * scale
    for column, separation in enumerate(separations):
        frame[contrast_column(separation)] = values[:, column]
    return frame.reset_index(drop=True)


def _cube_summaries(session: Session, principal: Principal, observation_ids: Select) -> dict[int, dict[str, float]]:
    """Per observation, the summary of its latest done pre-processed cube (n_frames, centres...)."""
    query = (
        select(Product.observation_id, Product.id, Product.meta, Product.reduction_id)
        .join(Reduction, Reduction.id == Product.reduction_id)
        .where(
            Product.kind == "cube",
            Reduction.status == "done",
            Product.observation_id.in_(observation_ids),
            visibility_filter(Product, principal),
        )
        .order_by(Product.id)
    )
    out: dict[int, dict[str, float]] = {}
    for observation_id, _product_id, meta, reduction_id in session.execute(query):
        meta = meta or {}
        n_frames = meta.get("n_frames")
        n_rejected = meta.get("n_rejected")
        centres = meta.get("centres_detector_xy") or []
        fwhm = meta.get("fwhm_px") or []
        out[observation_id] = {  # later products overwrite earlier ones: the latest wins
            "n_frames": float(n_frames) if n_frames is not None else np.nan,
            "n_rejected": float(n_rejected) if n_rejected is not None else np.nan,
            "rejected_fraction": (float(n_rejected) / n_frames) if n_frames else np.nan,
            "centre_x_px": float(centres[0][0]) if centres and centres[0] else np.nan,
            "centre_y_px": float(centres[0][1]) if centres and centres[0] else np.nan,
            "fwhm_px": float(np.nanmean(fwhm)) if fwhm else np.nan,
            "cube_reduction_id": float(reduction_id),
        }
    return out


def latest_limit_curves(session: Session, principal: Principal, observation_ids: Select) -> dict[int, dict]:
    """Per observation, the curve of its latest visible detection limit.

    "Latest" is the limit of the most recent reduction (highest id) that wrote
    limits for the observation; when that reduction wrote several (one per
    wavelength, e.g. the two DBI bands), the shortest wavelength is taken, so
    that a series compares the same band night after night.
    """
    latest_reduction = (
        select(DetectionLimit.observation_id, func.max(DetectionLimit.reduction_id).label("rid"))
        .where(DetectionLimit.observation_id.in_(observation_ids), visibility_filter(DetectionLimit, principal))
        .group_by(DetectionLimit.observation_id)
        .subquery()
    )
    wavelength = getattr(DetectionLimit, "wavelength_um", None)
    columns = [DetectionLimit.id, DetectionLimit.observation_id, DetectionLimit.sigma, DetectionLimit.algorithm]
    if wavelength is not None:
        columns.append(wavelength)
    heads = session.execute(
        select(*columns)
        .join(
            latest_reduction,
            and_(
                latest_reduction.c.observation_id == DetectionLimit.observation_id,
                latest_reduction.c.rid == DetectionLimit.reduction_id,
            ),
        )
        .where(visibility_filter(DetectionLimit, principal))
        .order_by(DetectionLimit.id)
    ).all()
    out: dict[int, dict] = {}
    for row in heads:
        lid, obs, sigma, algorithm = row[:4]
        wl = row[4] if len(row) > 4 else None
        current = out.get(obs)
        rank = (wl is None, wl if wl is not None else 0.0, lid)
        if current is None or rank < current["rank"]:
            out[obs] = {
                "limit_id": lid,
                "sigma": sigma,
                "algorithm": algorithm,
                "wavelength_um": wl,
                "rank": rank,
                "separations": [],
                "contrasts": [],
            }
    by_limit = {v["limit_id"]: v for v in out.values()}
    if not by_limit:
        return out
    chosen = select(DetectionLimit.id).join(
        latest_reduction,
        and_(
            latest_reduction.c.observation_id == DetectionLimit.observation_id,
            latest_reduction.c.rid == DetectionLimit.reduction_id,
        ),
    )
    points = session.execute(
        select(DetectionLimitPoint.limit_id, DetectionLimitPoint.sep_arcsec, DetectionLimitPoint.contrast)
        .where(DetectionLimitPoint.limit_id.in_(chosen))
        .order_by(DetectionLimitPoint.limit_id, DetectionLimitPoint.sep_arcsec)
    )
    for limit_id, separation, contrast in points:
        curve = by_limit.get(limit_id)
        if curve is not None:
            curve["separations"].append(separation)
            curve["contrasts"].append(contrast)
    return out


QUALITY_METRICS = (
    "dark_level_adu",
    "read_noise_adu",
    "n_hot_pixels",
    "n_unstable_pixels",
    "n_dead_pixels",
    "flat_rms",
    "flat_counts_adu",
    "sky_level_adu",
    "n_frames",
)


def calibrations_frame(session: Session, filters: Filters = Filters()) -> pd.DataFrame:
    """Reduced calibrations (public) with a night, one row each, quality numbers as columns."""
    query = (
        select(
            Calibration.id,
            Calibration.instrument,
            Calibration.kind,
            Calibration.night,
            Calibration.dit_s,
            Calibration.filter,
            Calibration.date_obs,
            Calibration.quality,
        )
        .where(Calibration.night.is_not(None), *filters.calibration_clauses())
        .order_by(Calibration.night, Calibration.id)
    )
    rows = []
    for cid, instrument, kind, night, dit, filter_, date_obs, quality in session.execute(query):
        quality = quality or {}
        row = {
            "id": cid,
            "instrument": instrument,
            "kind": kind,
            "night": night,
            "dit_s": dit,
            "filter": filter_,
            "time": _naive_utc(date_obs) or _night_time(night),
        }
        for key in QUALITY_METRICS:
            value = quality.get(key)
            row[key] = float(value) if isinstance(value, (int, float)) and value is not None else np.nan
        rows.append(row)
    columns = ["id", "instrument", "kind", "night", "dit_s", "filter", "time", *QUALITY_METRICS]
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"]) if len(frame) else pd.Series([], dtype="datetime64[ns]")
    return frame


def count_calibrations_without_night(session: Session, filters: Filters = Filters()) -> int:
    """Reduced calibrations that cannot be trended (no night: e.g. bad-pixel maps), for the instrument filter."""
    clauses = [Calibration.instrument == filters.instrument] if filters.instrument else []
    return int(session.scalar(select(func.count(Calibration.id)).where(Calibration.night.is_(None), *clauses)) or 0)


# --- pipeline status -------------------------------------------------------------------------------

#: How reduction statuses count for an observation (anything else counts as pending).
STATE_OF_STATUS = {
    "done": "done",
    "failed": "failed",
    "error": "failed",
    "running": "running",
    "pending": "pending",
    "queued": "pending",
    "planned": "pending",
    "submitted": "pending",
}
STATES = ("done", "failed", "running", "pending")
NO_CAMPAIGN = -1  #: pseudo campaign id: reductions run outside any campaign


def campaigns_frame(session: Session) -> pd.DataFrame:
    """All campaigns (names and versions are not proprietary), newest first."""
    rows = session.execute(
        select(
            Campaign.id,
            Campaign.name,
            Campaign.version,
            Campaign.status,
            Campaign.description,
            Campaign.created_at,
            Campaign.finished_at,
        ).order_by(Campaign.created_at.desc(), Campaign.id.desc())
    ).all()
    frame = pd.DataFrame(rows, columns=["id", "name", "version", "status", "description", "created_at", "finished_at"])
    for column in ("created_at", "finished_at"):
        frame[column] = [_naive_utc(v) for v in frame[column]]
    return frame


def any_visible_reduction(session: Session, principal: Principal) -> bool:
    """Whether ``principal`` may see at least one reduction (one row read, not the whole table)."""
    first = session.execute(select(Reduction.id).where(visibility_filter(Reduction, principal)).limit(1)).first()
    return first is not None


def campaign_reductions(
    session: Session, principal: Principal, campaign_id: int | None, filters: Filters = Filters()
) -> pd.DataFrame:
    """The visible reductions of a campaign (made in it or reused by it), with their observation.

    ``campaign_id`` None: every visible reduction; :data:`NO_CAMPAIGN`: those outside campaigns.
    """
    members = select(CampaignReduction.reduction_id)
    if campaign_id is None:
        scope = []
    elif campaign_id == NO_CAMPAIGN:
        scope = [Reduction.campaign_id.is_(None), Reduction.id.not_in(members)]
    else:
        scope = [
            or_(
                Reduction.campaign_id == campaign_id,
                Reduction.id.in_(members.where(CampaignReduction.campaign_id == campaign_id)),
            )
        ]
    observation_scope = []
    if filters != Filters():
        observation_scope = [Reduction.observation_id.in_(select(Observation.id).where(*filters.clauses()))]
    query = (
        select(
            Reduction.id,
            Reduction.observation_id,
            Observation.key,
            Observation.night,
            Observation.instrument,
            Target.name,
            Reduction.step,
            Reduction.step_version,
            Reduction.status,
            Reduction.error,
            Reduction.attempts,
            Reduction.started_at,
            Reduction.finished_at,
            Reduction.notebook_path,
            Reduction.report_path,
            Reduction.log_path,
            Reduction.campaign_id,
        )
        .outerjoin(Observation, Observation.id == Reduction.observation_id)
        .outerjoin(Target, Target.id == Observation.target_id)
        .where(visibility_filter(Reduction, principal), *scope, *observation_scope)
        .order_by(Reduction.id)
    )
    frame = pd.DataFrame(
        session.execute(query).all(),
        columns=[
            "id",
            "observation_id",
            "key",
            "night",
            "instrument",
            "target",
            "step",
            "step_version",
            "status",
            "error",
            "attempts",
            "started_at",
            "finished_at",
            "notebook_path",
            "report_path",
            "log_path",
            "campaign_id",
        ],
    )
    for column in ("started_at", "finished_at"):
        frame[column] = naive_utc_series(frame[column]).to_numpy() if len(frame) else frame[column].astype("M8[ns]")
    frame["state"] = [STATE_OF_STATUS.get(str(s).lower(), "pending") for s in frame["status"]]
    frame["duration_s"] = (
        (frame["finished_at"] - frame["started_at"]).dt.total_seconds() if len(frame) else pd.Series([], dtype=float)
    )
    return frame


def observation_states(reductions: pd.DataFrame) -> pd.DataFrame:
    """One row per observation: its state in the campaign (failed > running > pending > done).

    For each step the latest reduction (highest id) counts, so a retried step that
    succeeded is done. Columns: observation_id, key, night, target, instrument,
    state, steps, failed_steps.
    """
    columns = ["observation_id", "key", "night", "target", "instrument", "state", "steps", "failed_steps"]
    if reductions is None or reductions.empty:
        return pd.DataFrame(columns=columns)
    latest: dict[tuple[int, str], tuple] = {}
    fields = ["id", "observation_id", "key", "night", "target", "instrument", "step", "state"]
    for row in reductions[fields].sort_values("id").itertuples(index=False, name=None):
        if row[1] is None or pd.isna(row[1]):
            continue
        latest[(int(row[1]), row[6])] = row
    per_observation: dict[int, list[tuple]] = {}
    for (observation_id, _step), row in latest.items():
        per_observation.setdefault(observation_id, []).append(row)
    order = ("failed", "running", "pending", "done")
    out = []
    for observation_id in sorted(per_observation):
        rows = per_observation[observation_id]
        states = {r[7] for r in rows}
        first = rows[0]
        out.append(
            (
                observation_id,
                first[2],
                first[3],
                first[4],
                first[5],
                next(s for s in order if s in states),
                ", ".join(sorted(r[6] for r in rows)),
                ", ".join(sorted(r[6] for r in rows if r[7] == "failed")),
            )
        )
    return pd.DataFrame(out, columns=columns)


def count_unplanned(
    session: Session, principal: Principal, campaign_id: int | None, filters: Filters = Filters()
) -> int:
    """Visible observations with no reduction in the campaign (not planned or not reached yet)."""
    if campaign_id is None:
        reduced = select(Reduction.observation_id).where(Reduction.observation_id.is_not(None))
    elif campaign_id == NO_CAMPAIGN:
        reduced = select(Reduction.observation_id).where(
            Reduction.campaign_id.is_(None), Reduction.observation_id.is_not(None)
        )
    else:
        members = select(CampaignReduction.reduction_id).where(CampaignReduction.campaign_id == campaign_id)
        reduced = select(Reduction.observation_id).where(
            Reduction.observation_id.is_not(None), or_(Reduction.campaign_id == campaign_id, Reduction.id.in_(members))
        )
    return int(
        session.scalar(
            select(func.count(Observation.id)).where(
                visibility_filter(Observation, principal), *filters.clauses(), Observation.id.not_in(reduced)
            )
        )
        or 0
    )


# --- catalog browser -------------------------------------------------------------------------------

TARGET_COLUMNS = (
    "id",
    "name",
    "ra_deg",
    "dec_deg",
    "spectral_type",
    "parallax_mas",
    "distance_pc",
    "age_myr",
    "mag_J",
    "mag_H",
    "mag_K",
    "n_observations",
    "first_night",
    "last_night",
    "n_detections",
    "n_limits",
)


def targets_frame(
    session: Session, principal: Principal, filters: Filters = Filters(), search: str | None = None
) -> pd.DataFrame:
    """Targets with at least one visible observation within the filters (and matching ``search``)."""
    visible = [visibility_filter(Observation, principal), *filters.clauses()]
    query = (
        select(
            Target.id,
            Target.name,
            Target.ra_deg,
            Target.dec_deg,
            Target.spectral_type,
            Target.parallax_mas,
            Target.age_myr,
            func.count(Observation.id),
            func.min(Observation.night),
            func.max(Observation.night),
        )
        .join(Observation, Observation.target_id == Target.id)
        .where(*visible)
        .group_by(
            Target.id,
            Target.name,
            Target.ra_deg,
            Target.dec_deg,
            Target.spectral_type,
            Target.parallax_mas,
            Target.age_myr,
        )
        .order_by(Target.name)
    )
    if search and search.strip():
        from hcdc.catalog.registry import normalize_name  # imports astropy: only when searching

        pattern = f"%{normalize_name(search.strip())}%"
        query = query.where(Target.id.in_(select(TargetAlias.target_id).where(TargetAlias.normalized.like(pattern))))
    rows = session.execute(query).all()
    frame = pd.DataFrame(
        rows,
        columns=[
            "id",
            "name",
            "ra_deg",
            "dec_deg",
            "spectral_type",
            "parallax_mas",
            "age_myr",
            "n_observations",
            "first_night",
            "last_night",
        ],
    )
    frame["distance_pc"] = [1000.0 / p if p and p > 0 else np.nan for p in frame["parallax_mas"]]
    ids = select(Observation.id).where(*visible)
    magnitudes: dict[tuple[int, str], float] = {}
    if len(frame):
        for target_id, band, mag in session.execute(
            select(TargetMagnitude.target_id, TargetMagnitude.band, TargetMagnitude.mag).where(
                TargetMagnitude.target_id.in_(select(Observation.target_id).where(*visible))
            )
        ):
            magnitudes[(target_id, band.upper())] = mag
    for band in ("J", "H", "K"):
        frame[f"mag_{band}"] = [magnitudes.get((t, band), np.nan) for t in frame["id"]]
    detections = dict(
        session.execute(
            select(Observation.target_id, func.count(Detection.id))
            .join(Observation, Observation.id == Detection.observation_id)
            .where(visibility_filter(Detection, principal), Detection.observation_id.in_(ids))
            .group_by(Observation.target_id)
        ).all()
    )
    limits = dict(
        session.execute(
            select(Observation.target_id, func.count(DetectionLimit.id))
            .join(Observation, Observation.id == DetectionLimit.observation_id)
            .where(visibility_filter(DetectionLimit, principal), DetectionLimit.observation_id.in_(ids))
            .group_by(Observation.target_id)
        ).all()
    )
    frame["n_detections"] = [int(detections.get(t, 0)) for t in frame["id"]]
    frame["n_limits"] = [int(limits.get(t, 0)) for t in frame["id"]]
    return frame[list(TARGET_COLUMNS)]


def target_observations(
    session: Session,
    principal: Principal,
    target_id: int,
    filters: Filters = Filters(),
    settings: DashboardSettings | None = None,
) -> pd.DataFrame:
    """The visible observations of one target, with contrast, detection counts and their latest report."""
    frame = observations_frame(session, principal, filters, settings, target_id=target_id)
    ids = [int(i) for i in frame["id"]]
    detections = (
        dict(
            session.execute(
                select(Detection.observation_id, func.count(Detection.id))
                .where(Detection.observation_id.in_(ids), visibility_filter(Detection, principal))
                .group_by(Detection.observation_id)
            ).all()
        )
        if ids
        else {}
    )
    frame["n_detections"] = [int(detections.get(i, 0)) for i in ids]
    reports = latest_reports(session, principal, ids)
    frame["report_reduction_id"] = [reports.get(i, {}).get("reduction_id") for i in ids]
    frame["report_step"] = [reports.get(i, {}).get("step") for i in ids]
    frame["report_kind"] = [("report" if reports[i]["report"] else "notebook") if i in reports else None for i in ids]
    frame["report_status"] = [reports.get(i, {}).get("status") for i in ids]
    return frame


def latest_reports(session: Session, principal: Principal, observation_ids: list[int]) -> dict[int, dict]:
    """Per observation, the latest visible reduction that wrote a report (or else an executed notebook)."""
    if not observation_ids:
        return {}
    rows = session.execute(
        select(
            Reduction.id,
            Reduction.observation_id,
            Reduction.step,
            Reduction.report_path,
            Reduction.notebook_path,
            Reduction.status,
        )
        .where(
            Reduction.observation_id.in_(observation_ids),
            or_(Reduction.report_path.is_not(None), Reduction.notebook_path.is_not(None)),
            visibility_filter(Reduction, principal),
        )
        .order_by(Reduction.id)
    ).all()
    out: dict[int, dict] = {}
    for rid, obs, step, report, notebook, status in rows:
        current = out.get(obs)
        if current is not None and current["report"] and not report:
            continue  # a report beats a later notebook-only reduction
        out[obs] = {
            "reduction_id": rid,
            "step": step,
            "report": bool(report),
            "notebook": bool(notebook),
            "status": status,
        }
    return out


DETECTION_COLUMNS = (
    "id",
    "observation_id",
    "observation",
    "night",
    "instrument",
    "filter",
    "step",
    *DETECTION_MEASUREMENTS,
    "status",
    "release_date",
)


def target_detections(
    session: Session, principal: Principal, target_id: int, filters: Filters = Filters()
) -> pd.DataFrame:
    """Visible detections of one target's visible observations (within the filters)."""
    observations = select(Observation.id).where(
        Observation.target_id == target_id, visibility_filter(Observation, principal), *filters.clauses()
    )
    query = (
        select(
            Detection.id,
            Detection.observation_id,
            Observation.key,
            Observation.night,
            Observation.instrument,
            Observation.filter,
            Reduction.step,
            *(getattr(Detection, name) for name in DETECTION_MEASUREMENTS),
            Detection.status,
            Detection.release_date,
        )
        .join(Observation, Observation.id == Detection.observation_id)
        .join(Reduction, Reduction.id == Detection.reduction_id)
        .where(Detection.observation_id.in_(observations), visibility_filter(Detection, principal))
        .order_by(Observation.night, Detection.sep_arcsec, Detection.id)
    )
    return pd.DataFrame(session.execute(query).all(), columns=list(DETECTION_COLUMNS))


SPECTRUM_FRAME_COLUMNS = ("detection_id", "wavelength_um", "contrast", "contrast_err", "snr")


def detection_spectra(session: Session, principal: Principal, detection_ids: Iterable[int]) -> pd.DataFrame:
    """The spectra (IFS) of the given detections that ``principal`` may see, one row per channel."""
    ids = sorted({int(i) for i in detection_ids})
    if not ids:
        return pd.DataFrame(columns=list(SPECTRUM_FRAME_COLUMNS))
    query = (
        select(
            SpectrumPoint.detection_id,
            SpectrumPoint.wavelength_um,
            SpectrumPoint.contrast,
            SpectrumPoint.contrast_err,
            SpectrumPoint.snr,
        )
        .join(Detection, Detection.id == SpectrumPoint.detection_id)
        .where(SpectrumPoint.detection_id.in_(ids), visibility_filter(Detection, principal))
        .order_by(SpectrumPoint.detection_id, SpectrumPoint.wavelength_um)
    )
    return pd.DataFrame(session.execute(query).all(), columns=list(SPECTRUM_FRAME_COLUMNS))


LIMIT_COLUMNS = (
    "limit_id",
    "observation_id",
    "observation",
    "night",
    "instrument",
    "filter",
    "algorithm",
    "sigma",
    "release_date",
)


def target_limits(
    session: Session, principal: Principal, target_id: int, filters: Filters = Filters()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Visible detection limits of one target: (limits, points with limit_id/sep_arcsec/contrast/throughput)."""
    observations = select(Observation.id).where(
        Observation.target_id == target_id, visibility_filter(Observation, principal), *filters.clauses()
    )
    visible = and_(DetectionLimit.observation_id.in_(observations), visibility_filter(DetectionLimit, principal))
    limits = pd.DataFrame(
        session.execute(
            select(
                DetectionLimit.id,
                DetectionLimit.observation_id,
                Observation.key,
                Observation.night,
                Observation.instrument,
                Observation.filter,
                DetectionLimit.algorithm,
                DetectionLimit.sigma,
                DetectionLimit.release_date,
            )
            .join(Observation, Observation.id == DetectionLimit.observation_id)
            .where(visible)
            .order_by(Observation.night, DetectionLimit.id)
        ).all(),
        columns=list(LIMIT_COLUMNS),
    )
    points = pd.DataFrame(
        session.execute(
            select(
                DetectionLimitPoint.limit_id,
                DetectionLimitPoint.sep_arcsec,
                DetectionLimitPoint.contrast,
                DetectionLimitPoint.throughput,
            )
            .where(DetectionLimitPoint.limit_id.in_(select(DetectionLimit.id).where(visible)))
            .order_by(DetectionLimitPoint.limit_id, DetectionLimitPoint.sep_arcsec)
        ).all(),
        columns=["limit_id", "sep_arcsec", "contrast", "throughput"],
    )
    return limits, points


OBSERVATION_FIELDS = (
    "id",
    "key",
    "instrument",
    "night",
    "mode",
    "filter",
    "coronagraph",
    "dit_s",
    "n_science_frames",
    "field_rotation_deg",
    "seeing_arcsec",
    "tau0_ms",
    "airmass",
    "wind_speed_ms",
    "status",
    "status_reason",
    "release_date",
)


def observation_detail(session: Session, principal: Principal, observation_id: int) -> dict[str, Any] | None:
    """One visible observation (plain values) with its products and reductions; None when not visible or missing."""
    observation = session.scalar(
        select(Observation).where(Observation.id == observation_id, visibility_filter(Observation, principal))
    )
    if observation is None:
        return None
    reductions = [
        tuple(r)
        for r in session.execute(
            select(
                Reduction.id,
                Reduction.step,
                Reduction.status,
                Reduction.finished_at,
                Reduction.report_path,
                Reduction.notebook_path,
                Reduction.error,
            )
            .where(Reduction.observation_id == observation_id, visibility_filter(Reduction, principal))
            .order_by(Reduction.id)
        ).all()
    ]
    products = [
        tuple(r)
        for r in session.execute(
            select(Product.id, Product.kind, Product.size_bytes, Product.meta)
            .where(Product.observation_id == observation_id, visibility_filter(Product, principal))
            .order_by(Product.id)
        ).all()
    ]
    return {
        "observation": {name: getattr(observation, name) for name in OBSERVATION_FIELDS},
        "target": observation.target.name if observation.target else None,
        "programme": observation.programme.prog_id if observation.programme else None,
        "reductions": reductions,
        "products": products,
    }
