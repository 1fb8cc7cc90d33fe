"""Sources across epochs: linking detections into sources and telling bound from background.

``link_sources`` (``hcdc sources link``) groups the detections of each target — HC-DC's own, of every
observation, band and instrument, and the published astrometry registered with ``hcdc
register-astrometry`` — into sources (first confirming the detections the other arm of an IRDIFS OB saw at
the same place, :func:`vet_ob_partners`): taken in time order, a detection joins the source whose latest
epoch predicts it best under either hypothesis (co-moving: same place give or take the orbital motion
allowed; background: on the background track), when that prediction is within the gate (chi² of 2 dof
below :data:`LINK_GATE_CHI2`, 99.9 %); otherwise it starts a new source. So a background star that moved
100 mas between epochs is still recognised as the same object. Re-linking keeps each source's id when
most of its members stay together (idempotent).

The verdict (:func:`source_rows`) is computed when asked, from the epochs the viewer may see (the access
rule of :mod:`hcdc.access` on detections; published astrometry is public), with
:func:`reduction.astrometry.common_proper_motion_test`. It is never stored: a stored status computed from
every epoch would tell a PI what another PI's proprietary epoch showed. The grouping itself is made with
every epoch; a source none of whose epochs the viewer may see is not shown at all.

One measurement per observation enters the test: the detection with the smallest separation error among
the source's detections of that observation (the bands of one exposure share their centring and their
speckles: they are not independent epochs). Detections without errors (no NEGFC fit) are linked but not
tested (said in ``note``).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from reduction.astrometry import (
    Epoch,
    MotionTestParameters,
    StarAstrometry,
    common_proper_motion_test,
    plot_source,
    predicted_offsets,
)

from .catalog.models import Detection, ExternalDetection, Observation, Reduction, Source, Target

log = logging.getLogger(__name__)

#: chi² (2 dof) below which a detection may join a source: 99.9 % of true matches pass
LINK_GATE_CHI2 = 13.82
#: only vetted detections become sources: a flagged one (single-band, low-rotation: likely a speckle, which is
#: co-moving with the star by nature) or a rejected one would make a co-moving "source" out of the optics
LINKED_STATUSES = ("candidate", "confirmed", "background")
#: and only those above the detection threshold (the catalog also keeps weaker characterised candidates)
LINK_MIN_SNR = 5.0
#: separation and angle errors given to a detection without a fit, for linking only (mas)
UNFITTED_ERROR_MAS = 20.0

SOURCE_COLUMNS = (
    ("source", None, "Source id"),
    ("target", None, "Target name"),
    ("known_name", None, "Published companion it matches (empty when none)"),
    ("known_note", None, "Cross-match warning (at a known companion's separation, far from its angle)"),
    ("status", None, "co-moving / background / undetermined (from the epochs you may see)"),
    ("log10_odds", None, "log10 of the odds, co-moving over background"),
    ("n_epochs", None, "Epochs used (one per observation, plus published astrometry)"),
    ("n_detections", None, "Detections linked (all bands and reductions you may see)"),
    ("instruments", None, "Instruments whose detections are linked (IRDIFS: IRDIS and IFS of one OB)"),
    ("first_epoch", "yr", "First epoch (Julian year)"),
    ("last_epoch", "yr", "Last epoch (Julian year)"),
    ("span_yr", "yr", "Time between the first and last epochs"),
    ("sep_arcsec", "arcsec", "Separation at the last epoch"),
    ("pa_deg", "deg", "Position angle at the last epoch (east of north)"),
    ("chi2_comoving", None, "chi2 of the co-moving model (offset fitted)"),
    ("chi2_background", None, "chi2 of the background model (offset fitted)"),
    ("dof", None, "Degrees of freedom of those chi2 (2 x epochs - 2)"),
    ("note", None, "Why undetermined, or what was left out"),
)


@dataclass
class Measurement:
    """One epoch of a source candidate: an HC-DC detection or a published one."""

    kind: str  # "detection" | "external"
    row_id: int
    epoch: Epoch
    observation_id: int | None
    wavelength_um: float | None
    source_id: int | None
    fitted: bool
    object_name: str = ""  #: the published object's name (external epochs)
    instrument: str = ""

    @property
    def key(self) -> tuple:
        return (self.kind, self.row_id)


@dataclass
class LinkSummary:
    """What ``link_sources`` did, per target."""

    targets: int = 0
    sources: int = 0
    linked: int = 0
    new_sources: int = 0
    removed_sources: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def star_of(target: Target) -> StarAstrometry | None:
    """The target's astrometry for the test, or None when a required value is missing."""
    try:
        return StarAstrometry(
            ra_deg=target.ra_deg,
            dec_deg=target.dec_deg,
            pm_ra_mas_yr=target.pm_ra_mas_yr,
            pm_dec_mas_yr=target.pm_dec_mas_yr,
            parallax_mas=target.parallax_mas,
            pm_ra_err_mas_yr=target.pm_ra_err_mas_yr or 0.0,
            pm_dec_err_mas_yr=target.pm_dec_err_mas_yr or 0.0,
            parallax_err_mas=target.parallax_err_mas or 0.0,
            mass_msun=target.mass_msun or 1.0,
        )
    except (TypeError, ValueError):
        return None


def _mjd(observation: Observation) -> float:
    when = observation.date_start
    if when is None:  # the night's date: noon UTC of the next day is within hours of any exposure at Paranal
        when = datetime.combine(observation.night, time(4, 0), tzinfo=timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0


def _latest_reductions(session: Session, observation_ids, steps: tuple[str, ...] | None = None) -> set[int]:
    """The newest finished reduction of each observation (older ones are re-runs); of ``steps`` only when given."""
    latest: dict[int, int] = {}
    query = select(Reduction.id, Reduction.observation_id).where(
        Reduction.observation_id.in_(list(observation_ids)), Reduction.status == "done"
    )
    if steps is not None:
        query = query.where(Reduction.step.in_(steps))
    for rid, oid in session.execute(query):
        latest[oid] = max(latest.get(oid, 0), rid)
    return set(latest.values())


def measurements(session: Session, target: Target, detection_filter=None) -> list[Measurement]:
    """The target's epochs in time order: detections of each observation's newest reduction, and externals.

    ``detection_filter`` is a SQL condition on :class:`Detection` (the access rule) or None (everything).
    """
    query = (
        select(Detection, Observation)
        .join(Observation, Observation.id == Detection.observation_id)
        .where(
            Observation.target_id == target.id,
            Detection.status.in_(LINKED_STATUSES),
            Detection.snr >= LINK_MIN_SNR,
        )
    )
    if detection_filter is not None:
        query = query.where(detection_filter)
    rows = session.execute(query).all()
    latest = _latest_reductions(session, {o.id for _, o in rows})
    out = []
    for d, o in rows:
        if d.reduction_id not in latest:
            continue
        fitted = bool(d.sep_err_arcsec and d.pa_err_deg and np.isfinite(d.sep_err_arcsec) and np.isfinite(d.pa_err_deg))
        epoch = Epoch(
            mjd=_mjd(o),
            sep_mas=1000.0 * d.sep_arcsec,
            sep_err_mas=1000.0 * d.sep_err_arcsec if fitted else UNFITTED_ERROR_MAS,
            pa_deg=d.pa_deg,
            pa_err_deg=d.pa_err_deg if fitted else math.degrees(UNFITTED_ERROR_MAS / max(1000.0 * d.sep_arcsec, 1.0)),
        )
        out.append(
            Measurement("detection", d.id, epoch, o.id, d.wavelength_um, d.source_id, fitted, instrument=o.instrument)
        )
    for x in session.scalars(select(ExternalDetection).where(ExternalDetection.target_id == target.id)):
        epoch = Epoch(x.epoch_mjd, 1000.0 * x.sep_arcsec, 1000.0 * x.sep_err_arcsec, x.pa_deg, x.pa_err_deg)
        out.append(
            Measurement(
                "external", x.id, epoch, None, None, x.source_id, True, x.object_name, instrument=x.instrument or ""
            )
        )
    return sorted(out, key=lambda m: (m.epoch.mjd, m.kind, m.row_id))


def _distance2(m: Measurement, prior: Measurement, star: StarAstrometry | None, params) -> float:
    """Smallest chi² of ``m`` against the predictions ``prior`` makes for its epoch."""
    if star is None:  # no astrometry: the same place within the errors
        predictions = {"same place": (prior.epoch.offset, prior.epoch.covariance)}
    else:
        predictions = predicted_offsets(prior.epoch, star, m.epoch.mjd, params)
    best = math.inf
    for offset, cov in predictions.values():
        delta = m.epoch.offset - offset
        total = cov + m.epoch.covariance
        best = min(best, float(delta @ np.linalg.solve(total, delta)))
    return best


def group(measured: list[Measurement], star: StarAstrometry | None, params=None) -> list[list[Measurement]]:
    """Greedy time-ordered linking (see the module docstring)."""
    groups: list[list[Measurement]] = []
    for m in measured:
        best, best_d2 = None, LINK_GATE_CHI2
        for g in groups:
            if m.observation_id is not None and any(
                o.observation_id == m.observation_id and o.wavelength_um == m.wavelength_um for o in g
            ):
                continue  # one detection per exposure and band
            nearest = min(g, key=lambda o: abs(o.epoch.mjd - m.epoch.mjd))
            d2 = _distance2(m, nearest, star, params)
            if d2 < best_d2:
                best, best_d2 = g, d2
        if best is None:
            groups.append([m])
        else:
            best.append(m)
    return groups


#: what a cross-arm confirmation writes at the end of a detection's ``note``, with the status it replaced
#: (restored when a later reduction no longer shows the match)
IRDIFS_MARK = "IRDIFS: seen by "
#: the statuses a detection seen by the other arm of its OB may leave for ``confirmed``: flagged for want of
#: field rotation or of a second IRDIS band, not by a test that says it is a speckle (``speckle-like``)
CROSS_ARM_STATUSES = ("candidate", "low-rotation", "single-band")
NOTE_LENGTH = 200  # Detection.note


def cross_arm_match(d: Detection, other: Detection, min_arcsec: float) -> bool:
    """Are ``d`` and ``other`` (the two arms of one OB) one point source rather than a speckle seen twice?

    :func:`hcdc.postprocessing.same_point_source` both ways (each closer to the other than to where its own
    speckle would be at the other wavelength), with no chromatic allowance: between YJ and H the wavelength
    ratio is ~1.4, and the allowance made for IRDIS's two close bands (half the chromatic shift) would be a
    fifth of the separation, within which two unrelated speckles could confirm each other. So the two
    positions must agree within their errors (3.44 sigma) or ``min_arcsec``.
    """
    from .postprocessing import same_point_source

    return same_point_source(d, other, min_arcsec, chromatic_fraction=0.0) and same_point_source(
        other, d, min_arcsec, chromatic_fraction=0.0
    )


def _split_note(note: str | None) -> tuple[str, str | None]:
    """``(the note before the IRDIFS mark, the status the mark says it replaced)``; ``None`` without a
    valid mark (a status that is not one of :data:`CROSS_ARM_STATUSES` is not one this code wrote)."""
    before, found, after = (note or "").partition(IRDIFS_MARK)
    if not found:
        return before, None
    was = after.rpartition("; was ")[2].strip()
    return before.rstrip(" |"), (was if was in CROSS_ARM_STATUSES else None)


def vet_ob_partners(session: Session, target_id: int | None = None, partners: dict[int, int] | None = None) -> int:
    """IRDIFS: confirm the detections the other arm of their OB saw at the same place; returns the changes.

    IRDIS and IFS observe one OB at once at different wavelengths (e.g. H2/H3 and YJ). A point source is
    at the same place in both; a speckle is not (it scales with the wavelength: from YJ to H, 0.27" moves
    to 0.38"). So a detection matched by the partner arm's detection (:func:`cross_arm_match`) is
    ``confirmed``, even when ADI alone could not tell it from a speckle (``low-rotation``) or one IRDIS
    band missed it (``single-band``). Only the campaigns' newest reductions are read, and only when both
    arms have the same programme and release date (a confirmation tells what the other arm saw). The note
    keeps what it said, then ``IRDIFS: seen by <instrument>; was <status>`` (a note too long for both is
    shortened). Idempotent: a confirmation no longer matched returns to the status it replaced.
    """
    from .pipeline.runner import POSTPROCESS_STEPS
    from .postprocessing import CONFIRM_MIN_PX
    from .tables import ob_partners

    partners = ob_partners(session) if partners is None else partners
    if not partners:
        return 0
    query = select(Observation).where(Observation.id.in_(list(partners)))
    if target_id is not None:
        query = query.where(Observation.target_id == target_id)
    observations = {o.id: o for o in session.scalars(query)}
    # the campaigns' reductions only: a PI's interactive save writes its own notes and statuses, which must
    # not steer the catalog's vetting
    latest = _latest_reductions(session, set(observations), POSTPROCESS_STEPS)
    detections: dict[int, list[Detection]] = defaultdict(list)
    if latest:
        for d in session.scalars(select(Detection).where(Detection.reduction_id.in_(latest))):
            detections[d.observation_id].append(d)
    changed = 0
    for obs_id, observation in observations.items():
        partner = observations.get(partners[obs_id])
        if partner is None:
            continue
        same_rights = (observation.programme_id, observation.release_date) == (
            partner.programme_id,
            partner.release_date,
        )
        scale = max(observation.pixel_scale_arcsec or 0.0, partner.pixel_scale_arcsec or 0.0)
        others = [o for o in detections.get(partner.id, []) if o.status not in ("rejected", "speckle-like")]
        for d in detections.get(obs_id, []):
            note, was = _split_note(d.note)
            ours = d.status == "confirmed" and was is not None
            if d.status not in CROSS_ARM_STATUSES and not ours:
                continue
            match = same_rights and any(cross_arm_match(d, o, CONFIRM_MIN_PX * scale) for o in others)
            if match and not ours:
                mark = f"{IRDIFS_MARK}{partner.instrument}; was {d.status}"
                room = NOTE_LENGTH - len(mark) - 3
                kept = note if len(note) <= room else note[: room - 1] + "…"
                d.note = (kept + " | " if kept.strip() else "") + mark
                d.status = "confirmed"
                changed += 1
            elif not match and ours:
                d.status, d.note = was, note or None
                changed += 1
    session.flush()
    return changed


def link_sources(
    session: Session,
    target_name: str | None = None,
    params: MotionTestParameters | None = None,
    known: list | None = None,
) -> LinkSummary:
    """(Re)link every detection of each target (or of ``target_name``) into sources; idempotent.

    ``known``: published companions (:func:`hcdc.known_companions.load_known_companions`) to name the
    sources after; a source linked with registered published astrometry takes that publication's name.
    """
    from .catalog.registry import find_target
    from .known_companions import cross_match

    summary = LinkSummary()
    if target_name:
        target = find_target(session, target_name)
        if target is None:
            raise ValueError(f"no target named {target_name!r} in the catalog")
        targets = [target]
    else:
        with_detections = select(Observation.target_id).join(Detection, Detection.observation_id == Observation.id)
        with_external = select(ExternalDetection.target_id)
        targets = list(
            session.scalars(
                select(Target)
                .where(Target.id.in_(with_detections) | Target.id.in_(with_external))
                .order_by(Target.name)
            )
        )
    from .tables import ob_partners

    partners = ob_partners(session)
    for target in targets:
        vet_ob_partners(session, target.id, partners)
        star = star_of(target)
        if star is None:
            summary.skipped[target.name] = "no proper motion / parallax: linked by position only"
        measured = measurements(session, target)
        groups = group(measured, star, params)
        existing = {s.id: s for s in session.scalars(select(Source).where(Source.target_id == target.id))}
        used: set[int] = set()
        for g in groups:
            votes = Counter(m.source_id for m in g if m.source_id in existing and m.source_id not in used)
            if votes:
                source = existing[votes.most_common(1)[0][0]]
            else:
                source = Source(target_id=target.id)
                session.add(source)
                session.flush()
                summary.new_sources += 1
            used.add(source.id)
            external_names = sorted(m.object_name for m in g if m.kind == "external" and m.object_name)
            name, note = (f"{target.name} {external_names[0]}", None) if external_names else (None, None)
            if name is None and known:
                latest = max((m for m in g if m.fitted), key=lambda m: m.epoch.mjd, default=None)
                if latest is not None:
                    hosts = {target.name, *(a.alias for a in target.aliases)}
                    e = latest.epoch
                    name, note = cross_match(
                        hosts, e.sep_mas / 1000, e.sep_err_mas / 1000, e.pa_deg, e.pa_err_deg, known
                    )
            if source.known_name != name:
                source.known_name = name
            if source.known_note != note:
                source.known_note = note
            for m in g:
                model = Detection if m.kind == "detection" else ExternalDetection
                row = session.get(model, m.row_id)
                if row.source_id != source.id:
                    row.source_id = source.id
                summary.linked += 1
        # a detection that left every group (re-vetted, or of a superseded reduction) leaves its source
        linked_ids = {m.row_id for g in groups for m in g if m.kind == "detection"}
        for stale in session.scalars(
            select(Detection)
            .join(Observation, Observation.id == Detection.observation_id)
            .where(Observation.target_id == target.id, Detection.source_id.isnot(None))
        ):
            if stale.id not in linked_ids:
                stale.source_id = None
        for source_id, source in existing.items():
            if source_id not in used:
                session.delete(source)
                summary.removed_sources += 1
        summary.targets += 1
        summary.sources += len(groups)
    session.flush()
    return summary


def _epochs_for_test(members: list[Measurement]) -> tuple[list[Epoch], list[str]]:
    """One epoch per observation (the smallest error) plus each published one; what was left out."""
    notes = []
    by_observation: dict[Any, list[Measurement]] = defaultdict(list)
    for m in members:
        by_observation[m.observation_id if m.kind == "detection" else ("external", m.row_id)].append(m)
    epochs = []
    unfitted = 0
    for items in by_observation.values():
        fitted = [m for m in items if m.fitted]
        if not fitted:
            unfitted += 1
            continue
        epochs.append(min(fitted, key=lambda m: m.epoch.sep_err_mas).epoch)
    if unfitted:
        notes.append(f"{unfitted} epoch(s) without a fit left out of the test")
    return epochs, notes


def source_rows(
    session: Session,
    detection_filter=None,
    params: MotionTestParameters | None = None,
    target_name: str | None = None,
) -> list[dict[str, Any]]:
    """One row per source the viewer may see, its verdict from the epochs the viewer may see."""
    from .catalog.registry import find_target

    rows = []
    query = select(Source).order_by(Source.target_id, Source.id)
    if target_name:
        target = find_target(session, target_name)
        if target is None:
            raise ValueError(f"no target named {target_name!r} in the catalog")
        query = query.where(Source.target_id == target.id)
    sources = list(session.scalars(query))
    by_target: dict[int, list[Measurement]] = {}
    for source in sources:
        if source.target_id not in by_target:
            by_target[source.target_id] = measurements(session, source.target, detection_filter)
        members = [m for m in by_target[source.target_id] if m.source_id == source.id]
        if not members:
            continue  # nothing of it is visible: the source is not either
        star = star_of(source.target)
        epochs, notes = _epochs_for_test(members)
        if star is None:
            test = None
            notes.append("the target has no proper motion or parallax in the catalog")
        elif epochs:
            test = common_proper_motion_test(epochs, star, params)
            if test.note:
                notes.insert(0, test.note)
        else:
            test = None
        last = members[-1].epoch
        years = [m.epoch.year for m in members]
        rows.append(
            {
                "source": source.id,
                "target": source.target.name,
                "known_name": source.known_name,
                "known_note": source.known_note,
                "status": test.status if test else "undetermined",
                "log10_odds": _finite(test.log10_odds) if test else None,
                "n_epochs": len(epochs),
                "n_detections": len(members),
                "instruments": ", ".join(sorted({m.instrument for m in members if m.instrument})) or None,
                "first_epoch": min(years),
                "last_epoch": max(years),
                "span_yr": max(years) - min(years),
                "sep_arcsec": last.sep_mas / 1000.0,
                "pa_deg": last.pa_deg,
                "chi2_comoving": _finite(test.chi2_comoving) if test else None,
                "chi2_background": _finite(test.chi2_background) if test else None,
                "dof": test.dof if test else None,
                "note": "; ".join(notes) or None,
            }
        )
    return rows


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def sources_table(session: Session, detection_filter=None, target_name: str | None = None):
    """The sources as an astropy table (``hcdc catalog sources``)."""
    from .tables import build_table

    return build_table(
        source_rows(session, detection_filter, target_name=target_name), SOURCE_COLUMNS, meta={"table": "sources"}
    )


PHOTOMETRY_COLUMNS = (
    ("source", None, "Source id"),
    ("target", None, "Target name"),
    ("known_name", None, "Published companion it matches (empty when none)"),
    ("night", None, "Observing night"),
    ("ob_id", None, "ESO OB id (IRDIFS: one OB, two instruments)"),
    ("instrument", None, "Instrument (arm)"),
    ("observation", None, "Observation id"),
    ("detection", None, "Detection id"),
    ("kind", None, "band (a detection's own contrast: IRDIS, NACO) or channel (an IFS detection's spectrum)"),
    ("wavelength_um", "um", "Wavelength of the band or channel"),
    ("contrast", None, "Flux ratio to the star"),
    ("contrast_err", None, "1-sigma uncertainty of the contrast"),
    ("snr", None, "S/N of the detection (in the channel, for a spectrum)"),
)


def source_photometry(
    session: Session, detection_filter=None, source_id: int | None = None, target_name: str | None = None
) -> list[dict[str, Any]]:
    """The photometry of each source, every band and instrument: one row per (detection, band or channel).

    An IRDIS or NACO detection gives its band's contrast; an IFS detection its spectrum, channel by channel
    (:class:`SpectrumPoint`), or its collapsed contrast when it has none. So the IRDIS and IFS detections
    of one IRDIFS OB that were linked into one source give that source's photometry from both
    instruments side by side. Only the linked detections of each observation's newest reduction (as
    :func:`measurements`), and only those the viewer may see (``detection_filter``).
    """
    from .catalog.models import SpectrumPoint
    from .catalog.registry import find_target

    query = (
        select(Detection, Observation, Source, Target)
        .join(Observation, Observation.id == Detection.observation_id)
        .join(Source, Source.id == Detection.source_id)
        .join(Target, Target.id == Source.target_id)
        .order_by(Source.id, Observation.night, Observation.instrument, Detection.wavelength_um, Detection.id)
    )
    query = query.where(Detection.status.in_(LINKED_STATUSES), Detection.snr >= LINK_MIN_SNR)  # as measurements
    if source_id is not None:
        query = query.where(Source.id == source_id)
    if target_name:
        target = find_target(session, target_name)
        if target is None:
            raise ValueError(f"no target named {target_name!r} in the catalog")
        query = query.where(Source.target_id == target.id)
    if detection_filter is not None:
        query = query.where(detection_filter)
    rows_in = session.execute(query).all()
    latest = _latest_reductions(session, {o.id for _, o, _, _ in rows_in})
    spectra: dict[int, list] = defaultdict(list)
    ids = [d.id for d, *_ in rows_in]
    if ids:
        for point in session.scalars(
            select(SpectrumPoint)
            .where(SpectrumPoint.detection_id.in_(ids))
            .order_by(SpectrumPoint.detection_id, SpectrumPoint.wavelength_um)
        ):
            spectra[point.detection_id].append(point)
    rows = []
    for d, o, source, target in rows_in:
        if d.reduction_id not in latest:
            continue
        common = {
            "source": source.id,
            "target": target.name,
            "known_name": source.known_name,
            "night": o.night.isoformat(),
            "ob_id": o.ob_id,
            "instrument": o.instrument,
            "observation": o.id,
            "detection": d.id,
        }
        if spectra.get(d.id):
            for point in spectra[d.id]:
                rows.append(
                    {
                        **common,
                        "kind": "channel",
                        "wavelength_um": point.wavelength_um,
                        "contrast": _finite(point.contrast),
                        "contrast_err": _finite(point.contrast_err),
                        "snr": _finite(point.snr),
                    }
                )
        else:
            rows.append(
                {
                    **common,
                    "kind": "band",
                    "wavelength_um": d.wavelength_um,
                    "contrast": _finite(d.contrast),
                    "contrast_err": _finite(d.contrast_err),
                    "snr": _finite(d.snr),
                }
            )
    if source_id is not None and not rows:
        raise ValueError(f"no source {source_id}")  # not visible: the same answer as absent
    return rows


def photometry_table(session: Session, detection_filter=None, source_id=None, target_name=None):
    """The sources' photometry as an astropy table (``hcdc catalog photometry``)."""
    from .tables import build_table

    return build_table(
        source_photometry(session, detection_filter, source_id, target_name),
        PHOTOMETRY_COLUMNS,
        meta={"table": "photometry"},
    )


def source_track(session: Session, source_id: int, detection_filter=None) -> dict[str, Any]:
    """What the background-track plot of one source shows, from the epochs the viewer may see.

    Returns ``{"title", "test", "band"}`` (``band``: :func:`reduction.astrometry.track_band`); a source
    the viewer may not see is reported as absent (ValueError), like one that does not exist.
    """
    from reduction.astrometry import track_band

    epochs, star, test, title = _source_epochs(session, source_id, detection_filter)
    return {"title": title, "test": test, "band": track_band(epochs, star, test.parameters)}


def _source_epochs(session: Session, source_id: int, detection_filter=None):
    source = session.get(Source, source_id)
    if source is None:
        raise ValueError(f"no source {source_id}")
    members = [m for m in measurements(session, source.target, detection_filter) if m.source_id == source.id]
    if not members:
        raise ValueError(f"no source {source_id}")  # not visible: the same answer as absent
    star = star_of(source.target)
    if star is None:
        raise ValueError(f"target {source.target.name}: no proper motion or parallax, no background track to draw")
    epochs, _ = _epochs_for_test(members)
    if not epochs:
        raise ValueError(f"source {source_id}: no epoch with a fit to plot")
    test = common_proper_motion_test(epochs, star)
    title = f"{source.target.name} source {source.id}" + (f" ({source.known_name})" if source.known_name else "")
    return epochs, star, test, title


def plot_source_png(session: Session, source_id: int, path: Path, detection_filter=None) -> Path:
    """The background-track plot of one source, from the epochs the viewer may see, as a PNG file."""
    epochs, star, test, title = _source_epochs(session, source_id, detection_filter)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_source(epochs, star, test, title=title, path=path)
    return path


def register_astrometry(
    session: Session,
    target_name: str,
    rows: list[dict[str, Any]],
    reference: str,
    instrument: str | None = None,
) -> tuple[int, int]:
    """Register published relative astrometry of a target; returns ``(added, updated)``; idempotent.

    A row is identified by its target, reference, object and epoch, and its order among the rows of that
    epoch (two bands of one night are two rows); registering a corrected file again updates the values.

    Each row holds ``epoch_mjd``, ``sep_arcsec``, ``sep_err_arcsec``, ``pa_deg``, ``pa_err_deg`` and
    optionally ``object_name`` and ``instrument``.
    """
    from .catalog.registry import find_target

    target = find_target(session, target_name)
    if target is None:
        raise ValueError(f"no target named {target_name!r} in the catalog (load it with ingest --targets first)")
    if not reference or not reference.strip():
        raise ValueError("published astrometry needs its reference (bibcode or citation)")
    added = updated = 0
    seen: Counter = Counter()
    for index, row in enumerate(rows, start=1):
        values = {}
        for name in ("epoch_mjd", "sep_arcsec", "sep_err_arcsec", "pa_deg", "pa_err_deg"):
            value = row.get(name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"row {index}: {name} must be a number, got {value!r}") from None
            if not np.isfinite(value):
                raise ValueError(f"row {index}: {name} must be finite, got {value!r}")
            values[name] = value
        for name in ("sep_arcsec", "sep_err_arcsec", "pa_err_deg"):
            if values[name] <= 0:
                raise ValueError(f"row {index}: {name} must be > 0, got {values[name]}")
        values["pa_deg"] %= 360.0
        object_name = str(row.get("object_name") or "")
        # several measurements of one epoch (bands, instruments) are told apart by their order
        seq = seen[(values["epoch_mjd"], object_name)]
        seen[(values["epoch_mjd"], object_name)] += 1
        existing = session.scalar(
            select(ExternalDetection).where(
                ExternalDetection.target_id == target.id,
                ExternalDetection.epoch_mjd == values["epoch_mjd"],
                ExternalDetection.reference == reference,
                ExternalDetection.object_name == object_name,
                ExternalDetection.seq == seq,
            )
        )
        if existing is not None:
            for name, value in values.items():
                setattr(existing, name, value)
            updated += 1
            continue
        session.add(
            ExternalDetection(
                target_id=target.id,
                object_name=object_name,
                seq=seq,
                reference=reference,
                instrument=row.get("instrument") or instrument,
                **values,
            )
        )
        added += 1
    session.flush()
    return added, updated


def read_astrometry_file(path: Path) -> list[dict[str, Any]]:
    """Rows from a CSV/ECSV file: HC-DC's column names, or orbitize!'s (``epoch`` MJD, ``sep``/``sep_err`` in
    mas, ``pa``/``pa_err`` in degrees, ``object``); rows without a separation (radial velocities) are
    skipped, and said so by the caller."""
    from astropy.table import Table

    text = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if Path(path).suffix == ".ecsv":
        table = Table.read(path, format="ascii.ecsv")
    else:
        table = Table.read(text, format="ascii.csv")
    names = set(table.colnames)
    rows = []
    if {"epoch", "sep", "pa"} <= names:  # orbitize! format, mas
        for r in table:
            if _missing(r["sep"]):
                continue
            rows.append(
                {
                    "epoch_mjd": r["epoch"],
                    "sep_arcsec": float(r["sep"]) / 1000.0,
                    "sep_err_arcsec": float(r["sep_err"]) / 1000.0,
                    "pa_deg": r["pa"],
                    "pa_err_deg": r["pa_err"],
                    "object_name": str(r["object"]) if "object" in names else "",
                }
            )
    elif {"epoch_mjd", "sep_arcsec", "pa_deg"} <= names:
        for r in table:
            if _missing(r["sep_arcsec"]):
                continue
            rows.append({name: (None if _missing(r[name]) else r[name]) for name in table.colnames})
    else:
        raise ValueError(
            f"{path}: needs columns epoch_mjd, sep_arcsec, sep_err_arcsec, pa_deg, pa_err_deg "
            f"(or orbitize!'s epoch, sep, sep_err, pa, pa_err in mas); has {', '.join(table.colnames)}"
        )
    return rows


def _missing(value) -> bool:
    return value is None or (np.ma.is_masked(value)) or (isinstance(value, str) and not value.strip())
