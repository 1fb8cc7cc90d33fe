"""Catalog queries as astropy tables, and writing them for scripts.

Every ``hcdc catalog <table>`` command builds an astropy :class:`Table` with
units and descriptions, then writes it as CSV, ECSV or VOTable on stdout.
"""

from __future__ import annotations

import io
import sys
from datetime import date
from typing import IO, Any, Sequence

import numpy as np
from astropy.table import MaskedColumn, Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from .catalog.models import Observation, ObservationCalibration, Programme, RawFile, Target

FORMATS = ("csv", "ecsv", "votable")

#: Columns of ``hcdc catalog observations``: (name, unit, description).
OBSERVATION_COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("observation", None, "Observation key (instrument/night/OB/target/mode/filter/coronagraph/DIT)"),
    ("id", None, "Catalog id"),
    ("instrument", None, "Instrument (arm)"),
    ("target", None, "Target name"),
    ("ra_deg", "deg", "Target right ascension (ICRS)"),
    ("dec_deg", "deg", "Target declination (ICRS)"),
    ("night", None, "Observing night (date of the evening, local noon to noon)"),
    ("programme", None, "Programme id"),
    ("pi", None, "Principal investigator"),
    ("ob_id", None, "ESO OB id"),
    ("origin", None, "raw (from raw frames) or external (registered calibrated cube)"),
    ("mode", None, "Instrument mode"),
    ("filter", None, "Filter (pair)"),
    ("coronagraph", None, "Coronagraph (empty: none)"),
    ("dit_s", "s", "Science DIT"),
    ("n_science_files", None, "OBJECT files"),
    ("n_center_files", None, "OBJECT,CENTER files"),
    ("n_flux_files", None, "OBJECT,FLUX files"),
    ("n_science_frames", None, "Science frames (DITs)"),
    ("exposure_time_s", "s", "Total science integration"),
    ("date_start", None, "First frame (UTC)"),
    ("date_end", None, "Last frame (UTC)"),
    ("field_rotation_deg", "deg", "Field rotation over the science frames"),
    ("seeing_arcsec", "arcsec", "Median DIMM seeing"),
    ("tau0_ms", "ms", "Median coherence time"),
    ("airmass", None, "Median airmass"),
    ("wind_speed_ms", "m/s", "Median wind speed"),
    ("n_calibration_files", None, "Raw calibration files matched"),
    ("status", None, "complete / incomplete"),
    ("status_reason", None, "What is missing"),
    ("release_date", None, "End of the proprietary period"),
)


def observations_table(session: Session, *, instrument: str | None = None, target: str | None = None,
                       night: date | None = None, visible_ids: set[int] | None = None) -> Table:
    """The observations (optionally filtered) as an astropy table."""
    query = (select(Observation, Target, Programme)
             .outerjoin(Target, Observation.target_id == Target.id)
             .outerjoin(Programme, Observation.programme_id == Programme.id)
             .order_by(Observation.night, Observation.instrument, Observation.key))
    if instrument:
        query = query.where(Observation.instrument == instrument)
    if night:
        query = query.where(Observation.night == night)
    n_calib: dict[int, int] = {}
    for obs_id, raw_id in session.execute(select(ObservationCalibration.observation_id,
                                                 ObservationCalibration.raw_file_id)):
        n_calib.setdefault(obs_id, set()).add(raw_id)  # type: ignore[union-attr]
    rows: list[dict[str, Any]] = []
    from .catalog.registry import normalize_name

    for obs, tgt, prog in session.execute(query):
        if visible_ids is not None and obs.id not in visible_ids:
            continue
        if target and (tgt is None or not any(a.normalized == normalize_name(target) for a in tgt.aliases)):
            continue
        rows.append({
            "observation": obs.key, "id": obs.id, "instrument": obs.instrument,
            "target": tgt.name if tgt else None, "ra_deg": tgt.ra_deg if tgt else None,
            "dec_deg": tgt.dec_deg if tgt else None, "night": obs.night.isoformat(),
            "programme": prog.prog_id if prog else None, "pi": prog.pi_name if prog else None,
            "ob_id": obs.ob_id, "origin": obs.origin, "mode": obs.mode, "filter": obs.filter,
            "coronagraph": obs.coronagraph, "dit_s": obs.dit_s,
            "n_science_files": obs.n_science_files, "n_center_files": obs.n_center_files,
            "n_flux_files": obs.n_flux_files, "n_science_frames": obs.n_science_frames,
            "exposure_time_s": obs.exposure_time_s,
            "date_start": obs.date_start.isoformat() if obs.date_start else None,
            "date_end": obs.date_end.isoformat() if obs.date_end else None,
            "field_rotation_deg": obs.field_rotation_deg, "seeing_arcsec": obs.seeing_arcsec,
            "tau0_ms": obs.tau0_ms, "airmass": obs.airmass, "wind_speed_ms": obs.wind_speed_ms,
            "n_calibration_files": len(n_calib.get(obs.id, ())),  # type: ignore[arg-type]
            "status": obs.status, "status_reason": obs.status_reason,
            "release_date": obs.release_date.isoformat(),
        })
    return build_table(rows, OBSERVATION_COLUMNS, meta={"table": "observations"})


REJECTED_COLUMNS = (
    ("path", None, "File"),
    ("reason", None, "Why it was rejected"),
    ("keyword", None, "Header keyword at fault, if any"),
    ("size_bytes", "byte", "File size"),
)


def rejected_table(session: Session) -> Table:
    rows = [{"path": r.path, "reason": r.reject_reason, "keyword": r.reject_keyword, "size_bytes": r.size_bytes}
            for r in session.scalars(select(RawFile).where(RawFile.status == "rejected").order_by(RawFile.path))]
    return build_table(rows, REJECTED_COLUMNS, meta={"table": "rejected_files"})


def build_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str | None, str]],
                meta: dict[str, Any] | None = None) -> Table:
    """A typed astropy table; ``None`` becomes a masked value (never a fake number)."""
    table = Table(meta=meta or {})
    for name, unit, description in columns:
        values = [row.get(name) for row in rows]
        mask = [v is None for v in values]
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, bool):
            data = np.array([bool(v) if v is not None else False for v in values], dtype=bool)
        elif isinstance(sample, int):
            data = np.array([v if v is not None else 0 for v in values], dtype=np.int64)
        elif isinstance(sample, float):
            data = np.array([v if v is not None else np.nan for v in values], dtype=float)
        else:
            data = np.array([str(v) if v is not None else "" for v in values], dtype=str)
        if not rows:
            data = np.array([], dtype=float if unit else str)
        column = MaskedColumn(data, name=name, mask=mask if rows else None, unit=unit, description=description)
        table.add_column(column)
    return table


def write_table(table: Table, fmt: str, stream: IO | None = None) -> None:
    """Write ``table`` as csv, ecsv or votable to ``stream`` (stdout)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    stream = stream or sys.stdout
    if fmt == "votable":
        buffer = io.BytesIO()
        table.write(buffer, format="votable")
        text = buffer.getvalue().decode()
    else:
        buffer = io.StringIO()
        table.write(buffer, format="ascii.ecsv" if fmt == "ecsv" else "ascii.csv")
        text = buffer.getvalue()
    stream.write(text)
    stream.flush()
