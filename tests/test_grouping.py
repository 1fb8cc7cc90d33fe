"""Grouping frames into observations and matching calibrations (pure rules)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from reduction.grouping import calibration_sequences, group_observations, match_calibrations
from reduction.instruments import FrameKind, classify_header

from .factories import sphere_header

T0 = datetime(2026, 6, 10, 23, 30, tzinfo=timezone.utc)


def frames(dpr_type, start, n, step_s=60, **kwargs):
    template = start.strftime("%Y-%m-%dT%H:%M:%S")
    out = []
    for i in range(n):
        when = start + timedelta(seconds=i * step_s)
        header = sphere_header(dpr_type, when=when.replace(tzinfo=None), template_start=template, **kwargs)
        out.append(classify_header(header, f"{dpr_type}-{when.isoformat()}.fits", shape=(4, 8, 8)))
    return out


def an_ob(start=T0, ob_id=1, dit=16.0, flux_dit=0.84, target="HIP 65426", **kwargs):
    return [
        *frames("OBJECT,FLUX", start - timedelta(minutes=10), 1, dit=flux_dit, ob_id=ob_id, target=target, **kwargs),
        *frames("OBJECT,CENTER", start - timedelta(minutes=5), 1, dit=dit, ob_id=ob_id, target=target, **kwargs),
        *frames("OBJECT", start, 10, step_s=600, dit=dit, ob_id=ob_id, target=target, **kwargs),
        *frames("SKY", start + timedelta(hours=2), 2, dit=dit, ob_id=ob_id, target=target, **kwargs),
    ]


def test_sequence_across_utc_midnight_is_one_observation():
    science = an_ob()  # 23:30 UTC to 01:00 UTC next day
    assert {f.date_obs.date() for f in science if f.kind is FrameKind.SCIENCE} == {date(2026, 6, 10), date(2026, 6, 11)}
    groups = group_observations(science)
    assert len(groups) == 1
    group = groups[0]
    assert group.night == date(2026, 6, 10)
    assert (len(group.science), len(group.center), len(group.flux)) == (10, 1, 1)
    assert group.dits == [0.84, 16.0]
    assert not group.missing


def test_noon_boundary_separates_nights():
    evening = frames("OBJECT", datetime(2026, 6, 11, 15, 50, tzinfo=timezone.utc), 1, ob_id=5)  # 11:50 local
    after_noon = frames("OBJECT", datetime(2026, 6, 11, 16, 10, tzinfo=timezone.utc), 1, ob_id=5)  # 12:10 local
    groups = group_observations(evening + after_noon)
    assert sorted(g.night for g in groups) == [date(2026, 6, 10), date(2026, 6, 11)]


def test_ob_changing_dit_is_split_and_shares_center_and_flux():
    ob = an_ob(dit=16.0) + frames("OBJECT", T0 + timedelta(hours=3), 3, dit=32.0, ob_id=1, target="HIP 65426")
    groups = group_observations(ob)
    assert [g.dit_s for g in groups] == [16.0, 32.0]
    assert all(len(g.center) == 1 and len(g.flux) == 1 for g in groups)
    assert len({g.key for g in groups}) == 2


def test_ob_without_object_frames_is_kept_as_incomplete():
    lonely = frames("OBJECT,FLUX", T0, 2, ob_id=9, dit=0.84)
    groups = group_observations(lonely)
    assert len(groups) == 1 and groups[0].science == []
    assert "no OBJECT (science) frames" in groups[0].missing


def test_darks_match_dit_rounded_and_nearest_in_time():
    ob = an_ob(dit=16.0, flux_dit=0.84)
    calibrations = [
        *frames("DARK,BACKGROUND", T0 - timedelta(days=3), 3, dit=16.0),  # far
        *frames("DARK,BACKGROUND", T0 + timedelta(hours=9), 3, dit=16.0001),  # nearest, DIT within rounding
        *frames("DARK,BACKGROUND", T0 + timedelta(hours=1), 3, dit=16.5),  # nearer but other DIT
        *frames("DARK,BACKGROUND", T0 + timedelta(hours=10), 2, dit=0.8374640),
        *frames("FLAT,LAMP", T0 + timedelta(hours=11), 2, dit=1.0),
        *frames("FLAT,LAMP", T0 + timedelta(hours=2), 2, dit=1.0, filt="DB_K12"),  # other filter
    ]
    group = group_observations(ob)[0]
    matches = match_calibrations(group, calibration_sequences(ob + calibrations))
    by_need = {(m.role, m.for_dit_s): m for m in matches}
    background16 = by_need[(FrameKind.BACKGROUND, 16.0)].sequence
    assert background16 is not None
    assert {f.dit_s for f in background16.files} == {16.0001}
    assert all(f.date_obs > T0 + timedelta(hours=8) for f in background16.files)
    assert by_need[(FrameKind.BACKGROUND, 0.84)].sequence.files[0].dit_s == pytest.approx(0.837464)
    flat = by_need[(FrameKind.FLAT, None)].sequence
    assert flat is not None and {f.filter for f in flat.files} == {"DB_J23"}
    sky = by_need[(FrameKind.SKY, 16.0)].sequence
    assert sky is not None and len(sky.files) == 2
    missing = by_need[(FrameKind.DARK, 16.0)]
    assert missing.sequence is None and "no dark with DIT 16.00 s" in missing.reason


def test_other_instrument_calibrations_are_not_used():
    ob = an_ob()
    ifs_dark = [replace(f, instrument="SPHERE-IFS") for f in frames("DARK", T0, 2, dit=16.0)]
    group = group_observations(ob)[0]
    matches = match_calibrations(group, calibration_sequences(ob + ifs_dark))
    assert all(m.sequence is None for m in matches if m.role is FrameKind.DARK)
