"""Published contrast curves for comparison (read from the reference data, never copied).

The folder is ``<reference data>/published_contrast_curves`` where the
reference data are ``$HCDC_REFERENCE_DATA`` (default ``../shared/data``
beside the repository, see :mod:`hcdc.settings`). Which files and columns are
offered is configuration (:class:`hcdc.dashboards.config.ReferenceCurve`);
Δmag curves are converted to flux ratios (10^(−0.4 Δmag)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ReferenceCurve

FOLDER = "published_contrast_curves"


@dataclass(frozen=True)
class LoadedCurve:
    label: str
    file: str
    separations_arcsec: np.ndarray
    contrasts: np.ndarray


def reference_folder(reference_data: Path | None) -> Path | None:
    if reference_data is None:
        return None
    folder = Path(reference_data) / FOLDER
    return folder if folder.is_dir() else None


def read_curve(path: Path, spec: ReferenceCurve) -> LoadedCurve:
    """One curve: whitespace- or comma-separated columns, '#' comments."""
    separations, values = [], []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        try:
            separations.append(float(fields[spec.separation_column]))
            values.append(float(fields[spec.value_column]))
        except (IndexError, ValueError):
            continue
    seps = np.asarray(separations, dtype=float)
    vals = np.asarray(values, dtype=float)
    if spec.kind == "delta_mag":
        vals = 10 ** (-0.4 * vals)
    order = np.argsort(seps)
    if seps.size == 0:
        raise ValueError(f"{path.name}: no numeric rows in columns {spec.separation_column}/{spec.value_column}")
    return LoadedCurve(spec.label, spec.file, seps[order], vals[order])


def load_curves(reference_data: Path | None, specs: list[ReferenceCurve]) -> tuple[list[LoadedCurve], list[str]]:
    """The configured curves that could be read, and a message per one that could not."""
    folder = reference_folder(reference_data)
    if folder is None:
        return [], [
            f"published contrast curves not found ({reference_data or 'no reference data folder'}/"
            f"{FOLDER}); set HCDC_REFERENCE_DATA"
        ]
    curves, problems = [], []
    for spec in specs:
        path = folder / spec.file
        if not path.is_file():
            problems.append(f"reference curve {spec.file} not found in {folder}")
            continue
        try:
            curves.append(read_curve(path, spec))
        except (OSError, ValueError) as exc:
            problems.append(f"reference curve {spec.file} unreadable: {exc}")
    return curves, problems
