"""``hcdc ingest``: raw archive -> catalog, incrementally and idempotently.

1. Walk the archive; a file whose path, size and modification time are already
   in the catalog is not read again.
2. Read each new or changed file once (header, integrity check, sha256) and
   classify it with its instrument class; a file that cannot be read or
   classified is recorded as *rejected* with the reason and the keyword.
3. Insert/update the raw-file rows in batches.
4. When anything changed, regroup the accepted frames into observations and
   re-match calibrations (``reduction.grouping``), then write only the
   differences, so that a second run changes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session
from tqdm.auto import tqdm

from reduction.grouping import (
    ObservationGroup,
    calibration_sequences,
    group_observations,
    match_calibrations,
)
from reduction.instruments import INSTRUMENTS, ClassificationError, FrameKind, by_name, classify_header
from reduction.rawio import RawFileError, read_raw_header

from .catalog.db import Catalog
from .catalog.models import (
    IngestRun,
    Instrument,
    Observation,
    ObservationCalibration,
    Programme,
    RawFile,
    TargetAlias,
)
from .catalog.registry import (
    add_months,
    ensure_programme,
    ensure_target,
    load_programme_table,
    load_target_table,
    normalize_name,
)

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


@dataclass(frozen=True)
class Rejection:
    path: str
    reason: str
    keyword: str | None


@dataclass
class IngestReport:
    """What one ingest run did."""

    root: str
    seen: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored_not_fits: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    observations_added: int = 0
    observations_updated: int = 0
    observations_removed: int = 0
    calibration_links_added: int = 0
    calibration_links_removed: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.new
            or self.updated
            or self.observations_added
            or self.observations_updated
            or self.observations_removed
            or self.calibration_links_added
            or self.calibration_links_removed
        )


def _is_fits_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(FITS_SUFFIXES)


def walk_archive(root: Path) -> tuple[list[Path], int]:
    """FITS-named files below ``root`` (sorted) and the count of other files."""
    files: list[Path] = []
    others = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if _is_fits_name(name):
                files.append(Path(dirpath) / name)
            else:
                others += 1
    return files, others


def _examine(path: str) -> dict[str, Any]:
    """Read and classify one file; returns the raw-file row (accepted or rejected)."""
    stat = os.stat(path)
    row: dict[str, Any] = {"path": path, "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        raw = read_raw_header(path)
        row["sha256"] = raw.sha256
        info = classify_header(raw.header, path, raw.shape)
    except (RawFileError, ClassificationError) as exc:
        row.update(status="rejected", reject_reason=exc.reason, reject_keyword=exc.keyword)
        row.setdefault("sha256", None)
        return row
    except Exception as exc:  # never let one file stop a batch
        row.update(
            status="rejected",
            reject_reason=f"unexpected error: {type(exc).__name__}: {exc}",
            reject_keyword=None,
            sha256=row.get("sha256"),
        )
        return row
    summary = info.summary()
    summary.pop("path", None)
    row.update(
        status="accepted",
        reject_reason=None,
        reject_keyword=None,
        instrument=info.instrument,
        kind=info.kind.value,
        dpr_catg=info.category,
        dpr_type=info.type,
        dpr_tech=info.technique,
        date_obs=info.date_obs,
        mjd_obs=info.mjd_obs,
        night=info.night,
        dit_s=info.dit_s,
        ndit=info.ndit,
        n_frames=info.n_frames,
        target=info.target,
        programme=info.programme,
        ob_id=info.ob_id,
        ob_name=info.ob_name,
        template_start=info.template_start,
        mode=info.mode,
        filter=info.filter,
        coronagraph=info.coronagraph,
        header=summary,
        # calibrations are public at once; science frames get their release date
        # from their observation's programme when grouped
        release_date=info.date_obs.date() if info.kind.is_calibration else None,
    )
    return row


_ROW_COLUMNS = [
    c.name for c in RawFile.__table__.columns if c.name not in ("id", "ingested_at", "updated_at", "observation_id")
]


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in _ROW_COLUMNS}


def _examine_all(paths: list[str], workers: int, progress: bool) -> Iterator[dict[str, Any]]:
    bar = tqdm(total=len(paths), desc="reading headers", unit="file", disable=not progress or None, dynamic_ncols=True)
    try:
        if workers <= 1 or len(paths) < 50:
            for path in paths:
                yield _examine(path)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for row in pool.map(_examine, paths, chunksize=32):
                    yield row
                    bar.update()
    finally:
        bar.close()


def ensure_instruments(session: Session) -> None:
    """Insert the instrument rows this code knows (idempotent)."""
    known = set(session.scalars(select(Instrument.name)))
    for instrument in INSTRUMENTS:
        if instrument.name not in known:
            session.add(
                Instrument(
                    name=instrument.name,
                    telescope=instrument.telescope,
                    pixel_scale_mas=instrument.pixel_scale_mas.value,
                    site_latitude_deg=instrument.site_latitude_deg,
                    site_longitude_deg=instrument.site_longitude_deg,
                )
            )
    session.flush()


def ingest(
    root: str | Path,
    catalog: Catalog,
    *,
    programmes: Path | None = None,
    targets: Path | None = None,
    progress: bool = False,
    batch_size: int = 500,
    workers: int = 1,
    default_proprietary_months: int = 12,
) -> IngestReport:
    """Ingest the archive below ``root`` into ``catalog``.

    Parameters
    ----------
    root : path
        Archive folder (walked recursively; FITS-named files only).
    catalog : Catalog
        Destination.
    programmes, targets : path, optional
        Programme table (prog_id, pi, co_is, title, proprietary_months, ...)
        and target table (name, ra_deg, dec_deg, ... aliases) to load first.
    progress : bool
        Show a progress bar (on a terminal).
    batch_size : int
        Rows per transaction.
    workers : int
        Processes reading headers.
    default_proprietary_months : int
        Proprietary period for programmes that do not state one.

    Returns
    -------
    IngestReport
    """
    started = time.perf_counter()
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"archive folder {root} does not exist")
    report = IngestReport(root=str(root))
    with catalog.session() as session:
        ensure_instruments(session)
        if programmes is not None:
            load_programme_table(session, Path(programmes))
        if targets is not None:
            load_target_table(session, Path(targets))
        run = IngestRun(root=str(root))
        session.add(run)
        session.flush()
        run_id = run.id

    paths, report.ignored_not_fits = walk_archive(root) if root.is_dir() else ([root], 0)
    report.seen = len(paths)
    with catalog.session() as session:
        known = {
            p: (i, s, m)
            for p, i, s, m in session.execute(
                select(RawFile.path, RawFile.id, RawFile.size_bytes, RawFile.mtime_ns).where(
                    RawFile.path.startswith(str(root) if root.is_dir() else str(root))
                )
            )
        }
    todo: list[str] = []
    for path in paths:
        key = str(path)
        stat = path.stat()
        previous = known.get(key)
        if previous is not None and previous[1] == stat.st_size and previous[2] == stat.st_mtime_ns:
            report.unchanged += 1
        else:
            todo.append(key)

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []

    def flush() -> None:
        if not inserts and not updates:
            return
        with catalog.session() as session:
            if inserts:
                session.execute(insert(RawFile), inserts)
            if updates:
                session.execute(update(RawFile), updates)
        inserts.clear()
        updates.clear()

    for row in _examine_all(todo, workers, progress):
        data = _normalise(row)
        if data["status"] == "rejected":
            report.rejected.append(Rejection(row["path"], row["reject_reason"], row.get("reject_keyword")))
        else:
            report.kinds[data["kind"]] += 1
        previous = known.get(row["path"])
        if previous is None:
            inserts.append(data)
            report.new += 1
        else:
            updates.append({"id": previous[0], "observation_id": None, **data})
            report.updated += 1
        if len(inserts) + len(updates) >= batch_size:
            flush()
    flush()

    # Rejections recorded earlier are still rejections: list them again.
    with catalog.session() as session:
        already = set(r.path for r in report.rejected)
        for path, reason, keyword in session.execute(
            select(RawFile.path, RawFile.reject_reason, RawFile.reject_keyword).where(
                RawFile.status == "rejected", RawFile.path.startswith(str(root))
            )
        ):
            if path not in already:
                report.rejected.append(Rejection(path, reason, keyword))

    if report.new or report.updated or programmes is not None or not _grouped_once(catalog):
        regroup(catalog, report, default_proprietary_months)

    with catalog.session() as session:
        run = session.get(IngestRun, run_id)
        run.finished_at = datetime.now(timezone.utc)
        run.n_seen, run.n_new, run.n_updated = report.seen, report.new, report.updated
        run.n_unchanged, run.n_rejected = report.unchanged, len(report.rejected)
        run.n_observations_changed = (
            report.observations_added + report.observations_updated + report.observations_removed
        )
    report.seconds = time.perf_counter() - started
    return report


def _grouped_once(catalog: Catalog) -> bool:
    """False when accepted science frames exist but no observation was built yet."""
    with catalog.session() as session:
        orphan = session.scalar(
            select(RawFile.id)
            .where(
                RawFile.status == "accepted",
                RawFile.observation_id.is_(None),
                RawFile.kind.in_([k.value for k in FrameKind if k.is_science_sequence]),
            )
            .limit(1)
        )
        return orphan is None


# --- grouping into observations -------------------------------------------------------


def _median(values: Iterable[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.median(defined)) if defined else None


def field_rotation(frames: list[RawFile]) -> float | None:
    """Total field rotation (deg) over the science frames, unwrapping ±180° jumps."""
    angles: list[float] = []
    for frame in sorted(frames, key=lambda f: f.date_obs):
        header = frame.header or {}
        for key in ("parang_start_deg", "parang_end_deg"):
            if header.get(key) is not None:
                angles.append(float(header[key]))
    if len(angles) < 2:
        return None
    unwrapped = np.rad2deg(np.unwrap(np.deg2rad(angles)))
    return float(abs(unwrapped[-1] - unwrapped[0]))


def _observation_values(
    group: ObservationGroup, programme: Programme | None, target_id: int | None, default_months: int
) -> dict[str, Any]:
    science: list[RawFile] = group.science  # type: ignore[assignment]
    frames: list[RawFile] = group.frames  # type: ignore[assignment]
    headers = [f.header or {} for f in (science or frames)]
    times = [f.date_obs for f in frames]
    months = programme.proprietary_months if programme and programme.proprietary_months is not None else default_months
    instrument = by_name(group.instrument)
    missing = group.missing
    return dict(
        key=group.key,
        instrument=group.instrument,
        target_id=target_id,
        programme_id=programme.id if programme else None,
        origin="raw",
        night=group.night,
        ob_id=group.ob_id,
        ob_name=group.ob_name,
        mode=group.mode,
        filter=group.filter,
        coronagraph=group.coronagraph,
        dit_s=group.dit_s,
        date_start=min(times),
        date_end=max(times),
        n_science_files=len(group.science),
        n_center_files=len(group.center),
        n_flux_files=len(group.flux),
        n_science_frames=int(sum(f.n_frames or 0 for f in science)),
        exposure_time_s=float(sum((f.dit_s or 0) * (f.n_frames or 0) for f in science)) if science else None,
        parang_start_deg=headers[0].get("parang_start_deg") if headers else None,
        parang_end_deg=headers[-1].get("parang_end_deg") if headers else None,
        field_rotation_deg=field_rotation(science),
        seeing_arcsec=_median(h.get("seeing_arcsec") for h in headers),
        tau0_ms=_median(h.get("tau0_ms") for h in headers),
        airmass=_median(h.get("airmass") for h in headers),
        wind_speed_ms=_median(h.get("wind_speed_ms") for h in headers),
        pixel_scale_arcsec=instrument.pixel_scale_arcsec(group.filter),
        # ESO: proprietary for `months` from the night of observation
        release_date=add_months(group.night, months),
        status="complete" if not missing else "incomplete",
        status_reason="; ".join(missing) if missing else None,
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None)
    return a == b


def regroup(catalog: Catalog, report: IngestReport, default_months: int = 12) -> None:
    """Rebuild observations and calibration links from the accepted raw files.

    Only differences are written: re-running on an unchanged catalog writes
    nothing. Lookups are loaded once and links are written in bulk, so the
    cost is a few queries whatever the size of the archive.
    """
    with catalog.session() as session, session.no_autoflush:
        frames = list(session.scalars(select(RawFile).where(RawFile.status == "accepted")))
        groups = group_observations(frames)
        sequences = calibration_sequences(frames)
        existing = {o.key: o for o in session.scalars(select(Observation).where(Observation.origin == "raw"))}
        programmes = {p.prog_id: p for p in session.scalars(select(Programme))}
        targets = {a.normalized: a.target for a in session.scalars(select(TargetAlias))}
        plans: list[tuple[ObservationGroup, Observation, set[tuple[int, str, float | None]]]] = []
        for group in groups:
            reference = (group.science or group.frames)[0]
            header = reference.header or {}
            programme = programmes.get(reference.programme) if reference.programme else None
            if reference.programme and programme is None:
                programme = programmes[reference.programme] = ensure_programme(
                    session, reference.programme, header.get("pi_coi")
                )
            target = None
            if group.target:
                target = targets.get(normalize_name(group.target))
                if target is None:
                    target = targets[normalize_name(group.target)] = ensure_target(session, group.target, header)
            values = _observation_values(group, programme, target.id if target else None, default_months)
            matches = match_calibrations(group, sequences)
            calibration_notes = [m.reason for m in matches if m.sequence is None and m.reason]
            if calibration_notes:
                values["status_reason"] = "; ".join(filter(None, [values["status_reason"], *calibration_notes]))
            observation = existing.get(group.key)
            if observation is None:
                observation = Observation(**values)
                session.add(observation)
                report.observations_added += 1
            else:
                changed = False
                for name, value in values.items():
                    if not _same(getattr(observation, name), value):
                        setattr(observation, name, value)
                        changed = True
                if changed:
                    report.observations_updated += 1
            links = {
                (f.id, m.role.value, m.for_dit_s) for m in matches if m.sequence is not None for f in m.sequence.files
            }
            plans.append((group, observation, links))
        # observations whose frames are gone (file changed set-up or became unreadable)
        wanted_keys = {group.key for group in groups}
        for key in set(existing) - wanted_keys:
            session.execute(
                update(RawFile).where(RawFile.observation_id == existing[key].id).values(observation_id=None)
            )
            session.delete(existing[key])
            report.observations_removed += 1
        session.flush()  # ids of the new observations

        current: dict[tuple[int, int, str, float | None], int] = {
            (o, r, role, dit): link_id
            for link_id, o, r, role, dit in session.execute(
                select(
                    ObservationCalibration.id,
                    ObservationCalibration.observation_id,
                    ObservationCalibration.raw_file_id,
                    ObservationCalibration.role,
                    ObservationCalibration.for_dit_s,
                )
            )
        }
        wanted: set[tuple[int, int, str, float | None]] = set()
        for group, observation, links in plans:
            for frame in group.frames:
                if frame.observation_id != observation.id:
                    frame.observation_id = observation.id
                if frame.release_date != observation.release_date:
                    frame.release_date = observation.release_date
            wanted.update((observation.id, raw_id, role, dit) for raw_id, role, dit in links)
        removed = [current[key] for key in set(current) - wanted]
        added = sorted(wanted - set(current), key=str)
        if removed:
            session.execute(delete(ObservationCalibration).where(ObservationCalibration.id.in_(removed)))
        if added:
            session.execute(
                insert(ObservationCalibration),
                [{"observation_id": o, "raw_file_id": r, "role": role, "for_dit_s": dit} for o, r, role, dit in added],
            )
        report.calibration_links_removed += len(removed)
        report.calibration_links_added += len(added)
