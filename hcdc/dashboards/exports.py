"""Exports of a dashboard selection as CSV, ECSV or VOTable (astropy, via :mod:`hcdc.tables`).

The tables carry units and descriptions; missing values are masked, never
fake numbers. Observations use the same columns as ``hcdc catalog
observations`` (:func:`hcdc.tables.observations_table`).
"""

from __future__ import annotations

import io
import math
import re
from datetime import date, datetime
from typing import Any

import pandas as pd
from astropy.table import Table
from sqlalchemy.orm import Session

from hcdc.tables import DETECTION_MEASUREMENTS, FORMATS, build_table, detection_columns, observations_table, write_table

MIME = {"csv": "text/csv", "ecsv": "text/plain", "votable": "application/x-votable+xml"}
SUFFIX = {"csv": "csv", "ecsv": "ecsv", "votable": "vot.xml"}

TARGET_COLUMNS = (
    ("name", None, "Target name"),
    ("ra_deg", "deg", "Right ascension (ICRS)"),
    ("dec_deg", "deg", "Declination (ICRS)"),
    ("spectral_type", None, "Spectral type"),
    ("parallax_mas", "mas", "Parallax"),
    ("distance_pc", "pc", "Distance (1/parallax)"),
    ("age_myr", "Myr", "Age"),
    ("mag_J", "mag", "J magnitude"),
    ("mag_H", "mag", "H magnitude"),
    ("mag_K", "mag", "K magnitude"),
    ("n_observations", None, "Observations you may see"),
    ("first_night", None, "First night observed"),
    ("last_night", None, "Last night observed"),
    ("n_detections", None, "Detections you may see"),
    ("n_limits", None, "Detection limits you may see"),
)

DETECTION_COLUMNS = (
    ("id", None, "Detection id"),
    ("observation", None, "Observation key"),
    ("night", None, "Observing night"),
    ("instrument", None, "Instrument"),
    ("filter", None, "Filter"),
    ("step", None, "Post-processing step that found it"),
    *detection_columns(*DETECTION_MEASUREMENTS),
    ("status", None, "candidate / confirmed / background / rejected"),
    ("release_date", None, "End of the proprietary period"),
)

LIMIT_POINT_COLUMNS = (
    ("limit_id", None, "Detection limit id"),
    ("observation", None, "Observation key"),
    ("night", None, "Observing night"),
    ("instrument", None, "Instrument"),
    ("filter", None, "Filter"),
    ("algorithm", None, "Post-processing algorithm"),
    ("sigma", None, "Detection threshold (sigma)"),
    ("sep_arcsec", "arcsec", "Separation"),
    ("contrast", None, "Limiting contrast (flux ratio)"),
    ("throughput", None, "Algorithm throughput at this separation"),
    ("release_date", None, "End of the proprietary period"),
)


def _plain(value: Any) -> Any:
    """Python scalars for build_table (dates as ISO strings, NaN as missing)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    if value is pd.NaT:
        return None
    return value


def frame_table(frame: pd.DataFrame, columns, meta: dict[str, Any]) -> Table:
    rows = [{name: _plain(row.get(name)) for name, _u, _d in columns} for row in frame.to_dict("records")]
    return build_table(rows, columns, meta=meta)


def targets_table(frame: pd.DataFrame, meta: dict[str, Any]) -> Table:
    return frame_table(frame, TARGET_COLUMNS, {"table": "targets", **meta})


def detections_table(frame: pd.DataFrame, meta: dict[str, Any]) -> Table:
    return frame_table(frame, DETECTION_COLUMNS, {"table": "detections", **meta})


def sources_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> Table:
    """Sources with their verdicts, the columns of ``hcdc catalog sources`` (:data:`hcdc.sources.SOURCE_COLUMNS`)."""
    from hcdc.sources import SOURCE_COLUMNS

    return build_table(
        [{k: _plain(v) for k, v in r.items()} for r in rows], SOURCE_COLUMNS, meta={"table": "sources", **meta}
    )


def limits_table(limits: pd.DataFrame, points: pd.DataFrame, meta: dict[str, Any]) -> Table:
    merged = (
        points.merge(limits, on="limit_id", how="inner")
        if len(points)
        else pd.DataFrame(columns=[c for c, _u, _d in LIMIT_POINT_COLUMNS])
    )
    return frame_table(merged, LIMIT_POINT_COLUMNS, {"table": "detection_limits", **meta})


def selection_observations_table(session: Session, observation_ids: list[int], meta: dict[str, Any]) -> Table:
    table = observations_table(session, visible_ids=set(int(i) for i in observation_ids))
    table.meta.update(meta)
    return table


def serialise(table: Table, fmt: str) -> bytes:
    """The bytes of ``table`` written as csv, ecsv or votable."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    buffer = io.StringIO()
    write_table(table, fmt, buffer)
    return buffer.getvalue().encode()


def file_name(stem: str, fmt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "selection"
    return f"{safe}.{SUFFIX[fmt]}"
