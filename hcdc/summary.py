"""``hcdc catalog summary``: what is in the catalog, readable at a glance."""

from __future__ import annotations

import io
import shutil
from collections import Counter, defaultdict
from datetime import date

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .catalog.models import Observation, ObservationCalibration, Programme, RawFile, Target


def render_summary(session: Session, url: str, today: date | None = None, width: int | None = None) -> str:
    """The summary as plain text (no colour codes, so it can be piped or logged)."""
    today = today or date.today()
    width = width or max(160, shutil.get_terminal_size(fallback=(160, 40)).columns)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False, force_terminal=False)

    n_files = dict(session.execute(select(RawFile.status, func.count()).group_by(RawFile.status)).all())
    console.print(f"HC-DC catalog  {url}")
    console.print(f"raw files: {n_files.get('accepted', 0)} accepted, {n_files.get('rejected', 0)} rejected")

    kinds: dict[str, Counter] = defaultdict(Counter)
    for instrument, kind, count in session.execute(
        select(RawFile.instrument, RawFile.kind, func.count())
        .where(RawFile.status == "accepted")
        .group_by(RawFile.instrument, RawFile.kind)
    ):
        kinds[instrument][kind] = count
    if kinds:
        all_kinds = sorted({k for c in kinds.values() for k in c})
        table = RichTable(title="Raw files by instrument and kind", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("instrument")
        for kind in all_kinds:
            table.add_column(kind, justify="right")
        for instrument in sorted(kinds):
            table.add_row(instrument, *[str(kinds[instrument].get(k, 0) or "") for k in all_kinds])
        console.print(table)

    observations = list(
        session.execute(
            select(Observation, Target.name, Programme.prog_id)
            .outerjoin(Target, Observation.target_id == Target.id)
            .outerjoin(Programme, Observation.programme_id == Programme.id)
            .order_by(Observation.night, Observation.key)
        )
    )
    linked = dict(
        session.execute(
            select(
                ObservationCalibration.observation_id, func.count(func.distinct(ObservationCalibration.raw_file_id))
            ).group_by(ObservationCalibration.observation_id)
        ).all()
    )
    if observations:
        nights = [o.night for o, _t, _p in observations]
        public = sum(1 for o, _t, _p in observations if o.release_date <= today)
        console.print(
            f"observations: {len(observations)} ({public} public, {len(observations) - public} "
            f"proprietary on {today.isoformat()}), nights {min(nights)} .. {max(nights)}, "
            f"{len({t for _o, t, _p in observations if t})} target(s)"
        )
        table = RichTable(title="Observations", title_justify="left", box=box.SIMPLE_HEAD)
        for column, justify in (
            ("night", "left"),
            ("instr.", "left"),
            ("target", "left"),
            ("programme", "left"),
            ("filter", "left"),
            ("DIT s", "right"),
            ("sci/ctr/flux", "right"),
            ("frames", "right"),
            ("rot °", "right"),
            ('seeing "', "right"),
            ("τ0 ms", "right"),
            ("calib", "right"),
            ("status", "left"),
            ("public from", "left"),
        ):
            table.add_column(column, justify=justify, no_wrap=True)
        for obs, target, prog in observations:
            table.add_row(
                obs.night.isoformat(),
                obs.instrument.removeprefix("SPHERE-"),
                target or "?",
                prog or "-",
                obs.filter or "-",
                _fmt(obs.dit_s, "{:.2f}"),
                f"{obs.n_science_files}/{obs.n_center_files}/{obs.n_flux_files}",
                str(obs.n_science_frames),
                _fmt(obs.field_rotation_deg, "{:.1f}"),
                _fmt(obs.seeing_arcsec, "{:.2f}"),
                _fmt(obs.tau0_ms, "{:.1f}"),
                str(linked.get(obs.id, 0)),
                obs.status if obs.origin == "raw" else "external",
                obs.release_date.isoformat() + ("" if obs.release_date <= today else " *"),
            )
        console.print(table)
        console.print("* still proprietary")
        incomplete = [(o, t) for o, t, _p in observations if o.status_reason]
        if incomplete:
            console.print("notes:")
            for obs, target in incomplete:
                console.print(f"  {obs.night} {target or '?'} ({obs.instrument}): {obs.status_reason}")
    else:
        console.print("observations: none yet (run `hcdc ingest DIR`)")

    rejected = list(
        session.execute(
            select(RawFile.path, RawFile.reject_reason, RawFile.reject_keyword)
            .where(RawFile.status == "rejected")
            .order_by(RawFile.path)
        )
    )
    if rejected:
        console.print(f"rejected files ({len(rejected)}):")
        for path, reason, keyword in rejected[:20]:
            console.print(f"  {path}: {reason}" + (f" [{keyword}]" if keyword else ""))
        if len(rejected) > 20:
            console.print(f"  ... and {len(rejected) - 20} more (hcdc catalog rejected)")
    return buffer.getvalue()


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
