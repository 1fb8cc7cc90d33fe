"""Known companions: cross-matching sources with published ones.

A source is given a published companion's name when its host is the same star (names and aliases compared
as :func:`hcdc.catalog.registry.normalize_name` does) and its separation and position angle agree within
the tolerances below. A source at a known companion's separation but far from its published position
angle is flagged (``sources.known_note``): that usually means an angle-convention error in the data
(a wrong true-north or pupil offset, a mirrored or flipped frame), or an orbit seen edge-on that crossed
to the other side of the star since the published epoch.

The lists read, in this order (the first that names a companion wins):

* the staff's table (setting ``known_companions``, environment ``HCDC_KNOWN_COMPANIONS``): CSV or ECSV with
  ``host``, ``name``, ``sep_arcsec``, ``pa_deg`` and optionally ``sep_err_arcsec``, ``pa_err_deg``,
  ``epoch_year``, ``reference``;
* ``published_contrast_curves/DIplanets.txt`` of the reference data (known directly imaged planets with
  separation and angle, no epoch).

Tolerances: without an epoch, a companion may have moved along its orbit since it was published. The
separation must agree within ``3 σ`` (the source's and the published error in quadrature) plus
:data:`SEPARATION_SLACK` of the separation; the angle within ``3 σ`` plus :data:`ANGLE_SLACK_DEG`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: relative separation change allowed for orbital motion since an undated publication
SEPARATION_SLACK = 0.10
#: position-angle change allowed for orbital motion since an undated publication (degrees)
ANGLE_SLACK_DEG = 15.0


@dataclass(frozen=True)
class KnownCompanion:
    host: str
    name: str
    sep_arcsec: float
    pa_deg: float
    sep_err_arcsec: float = 0.0
    pa_err_deg: float = 0.0
    epoch_year: float | None = None
    reference: str = ""


def read_diplanets(path: Path) -> list[KnownCompanion]:
    """DIplanets.txt: ``name B1 B3 H rho PA source``, names like ``HIP_65426_b`` (host, then the letter)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 6:
            continue
        parts = fields[0].split("_")
        host, letter = " ".join(parts[:-1]), parts[-1]
        try:
            sep, pa = float(fields[4]), float(fields[5])
        except ValueError:
            continue
        out.append(KnownCompanion(host, f"{host} {letter}", sep, pa, reference=f"DIplanets.txt ({fields[-1]})"))
    return out


def read_staff_table(path: Path) -> list[KnownCompanion]:
    """The staff's table (see the module docstring); a missing column is a clear error."""
    from astropy.table import Table

    fmt = "ascii.ecsv" if Path(path).suffix == ".ecsv" else "ascii.csv"
    table = Table.read(path, format=fmt)
    missing = [c for c in ("host", "name", "sep_arcsec", "pa_deg") if c not in table.colnames]
    if missing:
        raise ValueError(f"{path}: known-companion table lacks column(s) {', '.join(missing)}")

    def cell(row, name, default=None):
        if name not in table.colnames or row[name] is None or (hasattr(row[name], "mask") and row[name].mask):
            return default
        return row[name]

    return [
        KnownCompanion(
            str(r["host"]),
            str(r["name"]),
            float(r["sep_arcsec"]),
            float(r["pa_deg"]),
            float(cell(r, "sep_err_arcsec", 0.0)),
            float(cell(r, "pa_err_deg", 0.0)),
            None if cell(r, "epoch_year") is None else float(cell(r, "epoch_year")),
            str(cell(r, "reference", "")),
        )
        for r in table
    ]


def load_known_companions(settings) -> list[KnownCompanion]:
    """Every list the settings name (staff table first, then the reference data's DIplanets.txt)."""
    known: list[KnownCompanion] = []
    if settings.known_companions is not None:
        known += read_staff_table(settings.known_companions)
    if settings.reference_data is not None:
        path = settings.reference_data / "published_contrast_curves" / "DIplanets.txt"
        if path.is_file():
            known += read_diplanets(path)
    return known


def cross_match(
    host_names: set[str], sep_arcsec: float, sep_err: float, pa_deg: float, pa_err: float, known: list[KnownCompanion]
) -> tuple[str | None, str | None]:
    """``(name, note)``: the matching known companion's name, or a note when only the separation agrees."""
    from .catalog.registry import normalize_name

    hosts = {normalize_name(h) for h in host_names}
    flagged = None
    for k in known:
        if normalize_name(k.host) not in hosts:
            continue
        sep_tol = 3 * math.hypot(sep_err or 0.0, k.sep_err_arcsec) + SEPARATION_SLACK * k.sep_arcsec
        if abs(sep_arcsec - k.sep_arcsec) > sep_tol:
            continue
        dpa = abs((pa_deg - k.pa_deg + 180.0) % 360.0 - 180.0)
        pa_tol = 3 * math.hypot(pa_err or 0.0, k.pa_err_deg) + ANGLE_SLACK_DEG
        if dpa <= pa_tol:
            return k.name, None
        if flagged is None:
            flagged = (
                f"at {k.name}'s separation ({k.sep_arcsec:.3f}\") but {dpa:.0f} deg from its published PA "
                f"({k.pa_deg:.1f} deg, {k.reference or 'staff table'}): check the angle convention"
            )
    return None, flagged
