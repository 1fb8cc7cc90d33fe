"""Group raw frames into observations and match them with their calibrations.

Pure functions on frame records (``FrameInfo`` or catalog rows: anything with
the attributes of :class:`FrameRecord`), so the rules are tested without a
database and the catalog applies them unchanged.

Rules (those of the open SPHERE pipelines and the SPHERE Data Center):

* An **observation** is the OBJECT frames of one instrument, observing night
  (noon to noon, local), OB, target, mode and filter, split further by
  coronagraph and DIT (rounded to 0.01 s) when an OB changed them. The OB's
  OBJECT,CENTER and OBJECT,FLUX frames belong to it (they have their own DITs;
  with several observations in one OB they go to each of them).
* **Calibrations** are grouped into *sequences* (one template: instrument,
  kind, template start, filter, and DIT for the kinds matched on DIT) and the
  nearest sequence in time is chosen per need: closed-shutter darks on each DIT
  the observation's frames use (``DIT`` rounded to 0.01 s); backgrounds
  (``DARK,BACKGROUND``, coronagraph in, thermal: filter-dependent) and skies on
  DIT and filter; flats on filter (all DITs of the template, for the
  per-pixel linear fit); IFS wavelength and spectra-position calibrations on
  the IFS mode.
* **Times** are mid-exposure times (``DATE-OBS + EXPTIME/2``); an observation's
  time is the mean over its OBJECT, CENTER and FLUX files, a sequence's the
  mean over its files.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Iterable, Protocol, Sequence

from reduction.instruments.base import FrameKind


class FrameRecord(Protocol):
    """The attributes the grouping reads (``FrameInfo`` and ``RawFile`` have them)."""

    path: str
    instrument: str
    kind: str
    night: date
    date_obs: datetime
    dit_s: float
    ob_id: int | None
    ob_name: str | None
    target: str | None
    mode: str | None
    filter: str | None
    coronagraph: str | None
    template_start: str | None
    ndit: int | None
    exptime_s: float | None


def dit_key(dit_s: float | None) -> float | None:
    """DIT rounded to 0.01 s: the key darks and skies are matched on."""
    return None if dit_s is None else round(float(dit_s), 2)


def _kind(frame: FrameRecord) -> FrameKind:
    return FrameKind(frame.kind)


def mid_exposure(frame: FrameRecord) -> datetime:
    """``DATE-OBS`` plus half the exposure (EXPTIME, else DIT x NDIT)."""
    duration = frame.exptime_s
    if duration is None:
        duration = (frame.dit_s or 0.0) * (frame.ndit or 1)
    return frame.date_obs + timedelta(seconds=0.5 * float(duration))


def mean_time(frames: Sequence[FrameRecord]) -> datetime:
    """Mean of the mid-exposure times of ``frames``."""
    times = [mid_exposure(f) for f in frames]
    origin = min(times)
    offset = sum((t - origin).total_seconds() for t in times) / len(times)
    return origin + timedelta(seconds=offset)


@dataclass
class ObservationGroup:
    """The frames of one observation and what identifies it."""

    key: str
    instrument: str
    night: date
    ob_id: int | None
    ob_name: str | None
    target: str | None
    mode: str | None
    filter: str | None
    coronagraph: str | None
    dit_s: float | None
    science: list[FrameRecord] = field(default_factory=list)
    center: list[FrameRecord] = field(default_factory=list)
    flux: list[FrameRecord] = field(default_factory=list)

    @property
    def frames(self) -> list[FrameRecord]:
        return [*self.science, *self.center, *self.flux]

    @property
    def dits(self) -> list[float]:
        """Every DIT (rounded) used by the observation's frames, sorted."""
        return sorted({dit_key(f.dit_s) for f in self.frames if f.dit_s is not None})

    @cached_property
    def mid_time(self) -> datetime:
        """Mean mid-exposure time of the OBJECT, CENTER and FLUX files."""
        return mean_time(self.frames)

    @property
    def missing(self) -> list[str]:
        """Which parts of a complete sequence are absent (for the status reason)."""
        out = []
        if not self.science:
            out.append("no OBJECT (science) frames")
        if not self.center:
            out.append("no OBJECT,CENTER frames (star centre from waffle spots)")
        if not self.flux:
            out.append("no OBJECT,FLUX frames (off-axis PSF)")
        return out


@dataclass(frozen=True)
class CalibrationSequence:
    """Calibration files taken together (one template)."""

    instrument: str
    kind: FrameKind
    dit_s: float | None
    filter: str | None
    mode: str | None
    start: datetime
    files: tuple[FrameRecord, ...]

    @cached_property
    def mid_time(self) -> datetime:
        """Mean mid-exposure time of the sequence's files (computed once)."""
        return mean_time(self.files)


@dataclass(frozen=True)
class CalibrationMatch:
    """One calibration need of an observation and the sequence chosen for it."""

    role: FrameKind
    for_dit_s: float | None
    sequence: CalibrationSequence | None
    reason: str | None = None  #: why nothing matched, when ``sequence`` is None


def observation_key(
    instrument: str,
    night: date,
    ob: str,
    target: str | None,
    mode: str | None,
    filter_: str | None,
    coronagraph: str | None,
    dit_s: float | None,
) -> str:
    """A readable, stable identifier of an observation."""
    dit = "none" if dit_s is None else f"{dit_s:.2f}"
    parts = [
        instrument,
        night.isoformat(),
        ob,
        target or "unknown-target",
        mode or "-",
        filter_ or "-",
        coronagraph or "no-coronagraph",
        f"DIT{dit}",
    ]
    return "/".join(p.replace("/", "_") for p in parts)


def _ob_label(frame: FrameRecord) -> str:
    if frame.ob_id is not None and frame.ob_id > 0:
        return f"OB{frame.ob_id}"
    return f"OB-{frame.ob_name or 'unnamed'}"


def group_observations(frames: Iterable[FrameRecord]) -> list[ObservationGroup]:
    """Group science-sequence frames into observations (see module rules).

    Frames that are not SCIENCE/CENTER/FLUX are ignored. An OB with CENTER or
    FLUX frames but no OBJECT frames still gives one (incomplete) observation,
    so that nothing is silently dropped.
    """
    by_ob: dict[tuple, list[FrameRecord]] = defaultdict(list)
    for frame in frames:
        if not _kind(frame).is_science_sequence:
            continue
        ob_key = (frame.instrument, frame.night, _ob_label(frame), frame.target, frame.mode, frame.filter)
        by_ob[ob_key].append(frame)

    groups: list[ObservationGroup] = []
    for (instrument, night, ob, target, mode, filter_), members in sorted(by_ob.items(), key=lambda kv: str(kv[0])):
        science = [f for f in members if _kind(f) is FrameKind.SCIENCE]
        center = sorted((f for f in members if _kind(f) is FrameKind.CENTER), key=lambda f: f.date_obs)
        flux = sorted((f for f in members if _kind(f) is FrameKind.FLUX), key=lambda f: f.date_obs)
        setups: dict[tuple, list[FrameRecord]] = defaultdict(list)
        for f in science:
            setups[(f.coronagraph, dit_key(f.dit_s))].append(f)
        if not setups:
            # CENTER/FLUX only: keyed on the centre frames' set-up (or flux's)
            ref = (center or flux)[0]
            setups[(ref.coronagraph, None)] = []
        ob_id = members[0].ob_id
        ob_name = members[0].ob_name
        for (coronagraph, dit), sci in sorted(setups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] or -1)):
            groups.append(
                ObservationGroup(
                    key=observation_key(instrument, night, ob, target, mode, filter_, coronagraph, dit),
                    instrument=instrument,
                    night=night,
                    ob_id=ob_id,
                    ob_name=ob_name,
                    target=target,
                    mode=mode,
                    filter=filter_,
                    coronagraph=coronagraph,
                    dit_s=dit,
                    science=sorted(sci, key=lambda f: f.date_obs),
                    center=list(center),
                    flux=list(flux),
                )
            )
    return groups


#: Calibration kinds matched per DIT; the others (flats, IFS lamps) keep all
#: the DITs of their template in one sequence.
MATCHED_ON_DIT = frozenset({FrameKind.DARK, FrameKind.BACKGROUND, FrameKind.SKY})


def calibration_sequences(frames: Iterable[FrameRecord]) -> list[CalibrationSequence]:
    """Group calibration frames into sequences (template, kind, filter, and DIT where matched on it)."""
    buckets: dict[tuple, list[FrameRecord]] = defaultdict(list)
    for frame in frames:
        kind = _kind(frame)
        if not kind.is_calibration:
            continue
        template = frame.template_start or f"{frame.night.isoformat()}"
        dit = dit_key(frame.dit_s) if kind in MATCHED_ON_DIT else None
        buckets[(frame.instrument, kind, template, dit, frame.filter, frame.mode)].append(frame)
    sequences = []
    for (instrument, kind, _template, dit, filter_, mode), files in buckets.items():
        files = sorted(files, key=lambda f: (f.date_obs, f.path))
        sequences.append(
            CalibrationSequence(
                instrument=instrument,
                kind=kind,
                dit_s=dit,
                filter=filter_,
                mode=mode,
                start=files[0].date_obs,
                files=tuple(files),
            )
        )
    sequences.sort(key=lambda s: (s.instrument, s.kind.value, s.start, s.dit_s or -1, s.filter or ""))
    return sequences


#: Which calibration kinds an observation needs, and what they are matched on.
#: ``dit``: one match per DIT of the observation's frames; ``filter``/``mode``:
#: the observation's filter/mode must be equal.
CALIBRATION_NEEDS: dict[str, tuple[tuple[FrameKind, bool, bool, bool], ...]] = {
    # (kind, per DIT, same filter, same mode)
    "default": (
        (FrameKind.DARK, True, False, False),
        (FrameKind.BACKGROUND, True, True, False),
        (FrameKind.SKY, True, True, False),
        (FrameKind.FLAT, False, True, False),
    ),
    "SPHERE-IFS": (
        (FrameKind.DARK, True, False, False),
        (FrameKind.BACKGROUND, True, True, False),
        (FrameKind.SKY, True, True, False),
        (FrameKind.FLAT, False, True, False),
        (FrameKind.WAVE, False, False, True),
        (FrameKind.SPECPOS, False, False, True),
    ),
}


def _nearest(candidates: Sequence[CalibrationSequence], when: datetime) -> CalibrationSequence | None:
    if not candidates:
        return None
    # ties broken by the earlier sequence, then by start time, for determinism
    return min(candidates, key=lambda s: (abs((s.mid_time - when).total_seconds()), s.start))


def match_calibrations(group: ObservationGroup, sequences: Sequence[CalibrationSequence]) -> list[CalibrationMatch]:
    """The calibration sequences an observation should use (nearest in time).

    Returns one :class:`CalibrationMatch` per need; a need with no candidate
    has ``sequence=None`` and a reason (never silently skipped).
    """
    needs = CALIBRATION_NEEDS.get(group.instrument, CALIBRATION_NEEDS["default"])
    by_kind: dict[FrameKind, list[CalibrationSequence]] = defaultdict(list)
    for seq in sequences:
        if seq.instrument == group.instrument:
            by_kind[seq.kind].append(seq)
    when = group.mid_time
    matches: list[CalibrationMatch] = []
    for kind, per_dit, same_filter, same_mode in needs:
        pool = by_kind.get(kind, [])
        if same_filter:
            pool = [s for s in pool if s.filter == group.filter]
        if same_mode:
            pool = [s for s in pool if s.mode == group.mode]
        dits: list[float | None] = list(group.dits) if per_dit else [None]
        for dit in dits:
            candidates = [s for s in pool if s.dit_s == dit] if per_dit else pool
            chosen = _nearest(candidates, when)
            reason = None
            if chosen is None:
                what = f"{kind.value} with DIT {dit:.2f} s" if per_dit else kind.value
                if same_filter:
                    what += f" and filter {group.filter}"
                if same_mode:
                    what += f" and mode {group.mode}"
                reason = f"no {what} in the archive"
            matches.append(CalibrationMatch(role=kind, for_dit_s=dit, sequence=chosen, reason=reason))
    return matches
