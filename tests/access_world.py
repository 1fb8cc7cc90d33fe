"""A small catalog for access tests: two PIs with proprietary programmes, one public programme.

* ``alice`` — PI of A (observed 40 days ago, proprietary); ``dave`` is co-I of A
* ``bob``   — PI of B (observed 40 days ago, proprietary)
* ``carol`` — PI of C (observed three years ago, public)
* ``sam``   — staff
* each observation has a reduction, one product file (under ``data_dir/products``),
  one detection and one detection limit, all inheriting the latest release date of
  their inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import select

from hcdc.access import release_date_of_inputs
from hcdc.catalog.models import (
    Detection,
    DetectionLimit,
    DetectionLimitPoint,
    Observation,
    Product,
    Programme,
    RawFile,
    Reduction,
    SpectrumPoint,
    User,
)
from hcdc.ingest import ingest

from .factories import sequence

PROGRAMMES = {
    "A": ("0111.C-0001(A)", "alice", "dave", "HIP 65426", 301),
    "B": ("0111.C-0002(B)", "bob", "", "51 Eri", 302),
    "C": ("090.C-0003(C)", "carol", "", "beta Pic", 303),
}


@dataclass
class World:
    observation: dict[str, int] = field(default_factory=dict)  # programme letter -> observation id
    product: dict[str, int] = field(default_factory=dict)  # letter -> product id
    product_path: dict[str, Path] = field(default_factory=dict)
    product_sha256: dict[str, str] = field(default_factory=dict)
    target: dict[str, str] = field(default_factory=dict)
    key: dict[str, str] = field(default_factory=dict)
    release: dict[str, date] = field(default_factory=dict)


def _ob(folder: Path, start: datetime, ob_id: int, target: str, prog_id: str) -> None:
    extra = {"HIERARCH ESO OBS PROG ID": prog_id}
    sequence(folder, "OBJECT,FLUX", start, 1, dit=0.84, ob_id=ob_id, target=target, **extra)
    sequence(folder, "OBJECT,CENTER", start + timedelta(minutes=3), 1, dit=16.0, ob_id=ob_id, target=target, **extra)
    sequence(
        folder, "OBJECT", start + timedelta(minutes=6), 2, step_s=600, dit=16.0, ob_id=ob_id, target=target, **extra
    )
    morning = datetime.combine(start.date() + timedelta(days=1), time(10, 0))
    sequence(folder, "DARK,BACKGROUND", morning, 1, dit=16.0)
    sequence(folder, "FLAT,LAMP", morning + timedelta(minutes=20), 1, dit=1.0)


def build_world(catalog, root: Path, data_dir: Path, today: date | None = None) -> World:
    """Ingest the three programmes and add reductions, products, detections, limits."""
    today = today or date.today()
    recent = datetime.combine(today - timedelta(days=40), time(23, 0))
    old = datetime.combine(today - timedelta(days=3 * 365), time(23, 0))
    archive = root / "archive"
    for letter, (prog_id, _pi, _coi, target, ob_id) in PROGRAMMES.items():
        start = old if letter == "C" else recent
        _ob(archive / letter, start, ob_id, target, prog_id)
    # 'pi' is the PI's user name ('pi_username' too, for older readers of the table; 'pi_name' the full name)
    table = Table(
        rows=[
            (prog_id, pi, pi, pi.title(), coi, 12, f"programme {letter}")
            for letter, (prog_id, pi, coi, _t, _o) in PROGRAMMES.items()
        ],
        names=("prog_id", "pi", "pi_username", "pi_name", "co_is", "proprietary_months", "title"),
    )
    programmes = root / "programmes.ecsv"
    table.write(programmes, format="ascii.ecsv", overwrite=True)
    report = ingest(archive, catalog, programmes=programmes)
    assert not report.rejected

    world = World()
    products = data_dir / "products"
    with catalog.session() as session:
        session.add(User(username="sam", full_name="Sam Staff", is_staff=True))
        for letter, (prog_id, _pi, _coi, target, _ob_id) in PROGRAMMES.items():
            programme = session.scalar(select(Programme).where(Programme.prog_id == prog_id))
            observation = session.scalar(select(Observation).where(Observation.programme_id == programme.id))
            raw_ids = list(session.scalars(select(RawFile.id).where(RawFile.observation_id == observation.id)))
            release = release_date_of_inputs(session, observation_ids=[observation.id], raw_file_ids=raw_ids)
            reduction = Reduction(
                observation_id=observation.id,
                step="adi_median",
                step_version="1",
                inputs=[{"raw_file_id": i} for i in raw_ids],
                status="done",
                release_date=release,
            )
            session.add(reduction)
            session.flush()
            path = products / f"obs{observation.id}" / f"{target.replace(' ', '_')}_adi_median.fits"
            path.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(np.full((8, 8), observation.id, dtype=np.float32)).writeto(path, overwrite=True)
            data = path.read_bytes()
            product = Product(
                reduction_id=reduction.id,
                observation_id=observation.id,
                kind="adi_residual",
                path=str(path),
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                release_date=release,
            )
            session.add(product)
            session.add(
                Detection(
                    reduction_id=reduction.id,
                    observation_id=observation.id,
                    x_px=3.0,
                    y_px=4.0,
                    sep_arcsec=0.5,
                    pa_deg=45.0,
                    snr=7.5,
                    contrast=1e-5,
                    release_date=release,
                    # an IFS-like spectrum: it follows its detection's visibility
                    spectrum=[SpectrumPoint(wavelength_um=w, contrast=1e-5, contrast_err=1e-6) for w in (1.0, 1.1)],
                )
            )
            limit = DetectionLimit(
                reduction_id=reduction.id,
                observation_id=observation.id,
                sigma=5.0,
                algorithm="adi_median",
                release_date=release,
            )
            limit.points = [DetectionLimitPoint(sep_arcsec=s, contrast=c) for s, c in ((0.2, 1e-4), (0.5, 1e-5))]
            session.add(limit)
            session.flush()
            world.observation[letter] = observation.id
            world.product[letter] = product.id
            world.product_path[letter] = path
            world.product_sha256[letter] = product.sha256
            world.target[letter] = target
            world.key[letter] = observation.key
            world.release[letter] = observation.release_date
    assert world.release["A"] > today and world.release["B"] > today and world.release["C"] <= today
    return world


def done_reduction(session, observation, step: str):
    """A finished reduction of ``observation`` by ``step`` (version 1, no inputs), released with it."""
    from hcdc.catalog.models import Reduction

    reduction = Reduction(
        observation_id=observation.id,
        step=step,
        step_version="1",
        inputs=[],
        status="done",
        release_date=observation.release_date,
    )
    session.add(reduction)
    session.flush()
    return reduction
