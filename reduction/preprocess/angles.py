"""Frame times and parallactic angles of science cubes, from their headers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

import numpy as np
from astropy.time import Time

from .. import conventions
from ..instruments import SphereIrdis
from .reading import RawFrames, dit_of


def frame_times(raw: RawFrames) -> list[datetime]:
    """Mid-exposure UTC time of each DIT of a raw cube: DATE-OBS + i x EXPTIME/NDIT + DIT/2."""
    start = SphereIrdis.parse_date(raw.header, str(raw.path))
    n = raw.n_frames
    dit = dit_of(raw)
    exptime = SphereIrdis._float(raw.header, "exptime", str(raw.path))
    step = exptime / n if exptime and exptime >= n * dit else dit
    return [start + timedelta(seconds=i * step + dit / 2) for i in range(n)]


def parallactic_angles(raws: Sequence[RawFrames]) -> tuple[list[datetime], np.ndarray]:
    """Per-frame times and parallactic angles (astropy, apparent place) of science cubes."""
    times = [t for raw in raws for t in frame_times(raw)]
    header = raws[0].header
    ra = SphereIrdis._float(header, "ra_deg", str(raws[0].path), required=True)
    dec = SphereIrdis._float(header, "dec_deg", str(raws[0].path), required=True)
    stamps = Time([t.replace(tzinfo=None) for t in times], scale="utc")
    angles = conventions.parallactic_angle_at(
        stamps, ra, dec, SphereIrdis.site_latitude_deg, SphereIrdis.site_longitude_deg, SphereIrdis.site_elevation_m
    )
    return times, np.asarray(angles, dtype=float)
