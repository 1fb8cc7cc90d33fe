"""Reading the inputs of post-processing and writing its products (FITS images, ECSV tables).

Readers give clear errors naming the file (shape, NaNs, empty HDUs). Writers
put the provenance of a product in its header / table metadata: the step name
and version, its parameters (JSON), the inputs with their sha256, the software
versions and the time. The catalog records the same provenance.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from reduction.rawio import sha256_file  # noqa: F401  (re-exported: one implementation)


class ProductInputError(ValueError):
    """An input file that cannot be used, naming the file."""


def read_fits_array(path: str | Path, what: str) -> np.ndarray:
    """The first HDU with data, as float64 (``what`` names it in errors)."""
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if hdu.data is not None and getattr(hdu.data, "size", 0):
                    return np.asarray(hdu.data, dtype=float)
    except (OSError, TypeError, ValueError) as exc:
        raise ProductInputError(f"{path}: cannot read the {what} as FITS: {exc}") from exc
    raise ProductInputError(f"{path}: no data in any HDU (expected the {what})")


def read_cube(path: str | Path) -> np.ndarray:
    """A (t, y, x) or (λ, t, y, x) cube."""
    data = read_fits_array(path, "cube")
    if data.ndim not in (3, 4):
        raise ProductInputError(f"{path}: the cube must be 3-D (t, y, x) or 4-D (λ, t, y, x), got shape {data.shape}")
    return data


def read_angles(path: str | Path) -> np.ndarray:
    """Derotation angles: a vector, or vip's (n, 1) / (1, n) layout."""
    data = read_fits_array(path, "angles")
    if data.ndim == 2 and 1 in data.shape:
        data = data.ravel()
    if data.ndim != 1:
        raise ProductInputError(f"{path}: the angles must be a vector, got shape {data.shape}")
    return data


def read_psf(path: str | Path) -> np.ndarray:
    """An off-axis PSF image (a (1, y, x) cube is accepted)."""
    data = read_fits_array(path, "PSF")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ProductInputError(f"{path}: the PSF must be a 2-D image, got shape {data.shape}")
    return data


def software_versions() -> dict[str, str]:
    """Versions of the scientific stack (for provenance)."""
    versions = {"python": platform.python_version()}
    import astropy
    import scipy

    versions.update(numpy=np.__version__, scipy=scipy.__version__, astropy=astropy.__version__)
    try:
        from importlib.metadata import version

        versions["hcdc"] = version("hcdc")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        pass
    return versions


def provenance_record(
    step: str, version: str, parameters: dict[str, Any], inputs: dict[str, str | Path] | None = None
) -> dict[str, Any]:
    """A JSON-serialisable provenance record."""
    files = {}
    for name, path in (inputs or {}).items():
        path = Path(path)
        files[name] = {"path": str(path), "sha256": sha256_file(path) if path.is_file() else None}
    return {
        "step": step,
        "version": version,
        "parameters": parameters,
        "inputs": files,
        "software": software_versions(),
        "host": platform.node(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


#: longest text value written as a card; longer ones (hashes, paths) are cut there, whole in HISTORY
CARD_TEXT = 40


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _card_value(value: Any) -> Any:
    if isinstance(value, (bool, int, np.integer)):
        return value.item() if isinstance(value, np.integer) else value
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        value = json.dumps(list(value), default=str)
    return str(value)[:CARD_TEXT]


def _set_card(header: fits.Header, key: str, value: Any) -> None:
    """Set a HIERARCH card, its text cut to fit the 80-column card (the whole value is in HISTORY)."""
    if isinstance(value, str):
        room = 80 - len(key) - len(" = ''")
        value = value[: max(room, 0)]
    try:
        header[key] = value
    except ValueError:  # a name too long for any value: the HISTORY JSON still has it
        pass


def provenance_header(provenance: dict[str, Any] | None, header: fits.Header | None = None) -> fits.Header:
    """The one header convention of every HC-DC product.

    * ``HIERARCH HCDC <KEY>``: each scalar of the provenance (``STEP``, ``STEP_VERSION``,
      ``REDUCTION_ID``, ``OBSERVATION_ID``, ``CODE_VERSION``, ``GIT_COMMIT``, …; text cut at
      :data:`CARD_TEXT` characters);
    * ``HIERARCH HCDC PARAM <NAME>``: every parameter of the reduction (nested groups dotted:
      ``SUBTRACTION.NCOMP``);
    * ``HISTORY``: the whole provenance as JSON (inputs with their sha256, software versions),
      which :func:`read_provenance` gives back.
    """
    header = fits.Header() if header is None else header
    if not provenance:
        return header
    for key, value in provenance.items():
        if value is None or isinstance(value, dict) or key == "parameters":
            continue
        _set_card(header, f"HIERARCH HCDC {key.upper()}", _card_value(value))
    for name, value in _flat(provenance.get("parameters") or {}).items():
        if value is not None:
            _set_card(header, f"HIERARCH HCDC PARAM {name.upper()}", _card_value(value))
    text = json.dumps(provenance, sort_keys=True, default=str)
    for start in range(0, len(text), 68):
        header.add_history(text[start : start + 68])
    return header


def read_provenance(header: fits.Header) -> dict[str, Any]:
    """The provenance a product's HISTORY carries (see :func:`provenance_header`)."""
    return json.loads("".join(str(card) for card in header.get("HISTORY", [])) or "{}")


def write_image(
    path: str | Path,
    data: np.ndarray,
    provenance: dict[str, Any] | None = None,
    cards: dict[str, tuple[Any, str]] | None = None,
    dtype: Any = np.float64,
) -> Path:
    """Write a FITS image: the provenance by :func:`provenance_header`, then the keyword ``cards``.

    The one FITS writer of HC-DC's products (pipeline, command line, interactive saves).
    """
    path = Path(path)
    header = provenance_header(provenance)
    for key, (value, comment) in (cards or {}).items():
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        header[key] = (value, comment)
    with named_write(path):
        fits.PrimaryHDU(data=np.asarray(data, dtype=dtype), header=header).writeto(path, overwrite=True)
    return path


def write_table(path: str | Path, table: Table, provenance: dict[str, Any] | None = None) -> Path:
    """Write an ECSV table with the provenance in its metadata."""
    path = Path(path)
    if provenance is not None:
        table.meta["provenance"] = json.loads(json.dumps(provenance, default=str))
    with named_write(path):
        table.write(path, format="ascii.ecsv", overwrite=True)
    return path


@contextmanager
def named_write(path: Path) -> Iterator[None]:
    """Writing ``path``: on an OS error (a full disk) the partial file is removed and the error names it.

    Python's ``write`` reports ``[Errno 28] No space left on device`` without a file name; a person
    reading a failed campaign must know which product and which disk.
    """
    try:
        yield
    except OSError as exc:
        Path(path).unlink(missing_ok=True)  # no partial product left behind
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
