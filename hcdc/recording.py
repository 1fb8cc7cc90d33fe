"""Recording what a reduction made: its provenance and its products, said once.

Every way a reduction reaches the catalog — the pipeline's pre- and post-processing, a PI's
interactive save through the catalog service, a registered external cube, a reduced
calibration — builds the provenance of its files with :func:`reduction_provenance` (the
``reductions`` row is the source: step, version, id, observation, code, parameters, inputs)
and records the files with :func:`record_products` (sha256 and size read from the file on
disk, never taken from a client; the release date the caller derived from the access rule).
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Mapping

from reduction.rawio import sha256_file

from .catalog.models import Product, Reduction

#: a product's provenance lists its inputs up to this many; beyond, their combined checksum
MAX_LISTED_INPUTS = 16


def inputs_fingerprint(hashes: Iterable[str]) -> str:
    """One checksum for a set of input files (order does not matter)."""
    return hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()


def reduction_provenance(reduction: Reduction, **extra: Any) -> dict[str, Any]:
    """The provenance written into each product of ``reduction`` (FITS header, ECSV metadata).

    ``extra`` adds facts of one product (``band``, ``wave_um``, ``date``…); ``None`` values are left out.
    """
    record: dict[str, Any] = {
        "step": reduction.step,
        "step_version": reduction.step_version,
        "reduction_id": reduction.id,
        "observation_id": reduction.observation_id,
        "code_version": reduction.code_version,
        "git_commit": reduction.git_commit,
        "params_sha256": reduction.parameters_sha256,
        "parameters": reduction.parameters or {},
    }
    inputs = list(reduction.inputs or [])
    if len(inputs) <= MAX_LISTED_INPUTS:
        record["inputs"] = [
            {k: item.get(k) for k in ("reduction_id", "product_id", "kind", "path", "sha256") if item.get(k)}
            for item in inputs
        ]
    else:  # hundreds of raw frames: their combined checksum (the reduction row lists each)
        record["n_inputs"] = len(inputs)
        record["inputs_sha256"] = inputs_fingerprint(str(item.get("sha256")) for item in inputs)
    record.update({k: v for k, v in extra.items() if v is not None})
    return {k: v for k, v in record.items() if v is not None}


def record_products(
    reduction: Reduction,
    paths: Mapping[str, Path | str],
    *,
    observation_id: int | None,
    release_date: date | None,
    meta: Mapping[str, Mapping[str, Any]] | None = None,
    sha256: Mapping[str, str] | None = None,
) -> list[Product]:
    """Add one ``products`` row per file of ``paths`` (kind → path) to ``reduction``; return them.

    Parameters
    ----------
    reduction : Reduction
        The reduction that made the files (in an open session).
    paths : mapping
        Kind → path of each file, written by the server under the folder it derived.
    observation_id : int or None
        The observation the files belong to (None: a calibration shared by observations).
    release_date : date or None
        When the files become public (the caller applies the access rule).
    meta : mapping, optional
        Kind → metadata stored with that product (the cube's summary for monitoring).
    sha256 : mapping, optional
        Kind → checksum already computed from the same bytes (saves reading the file twice).
    """
    products = []
    for kind, path in paths.items():
        path = Path(path)
        product = Product(
            observation_id=observation_id,
            kind=kind,
            path=str(path),
            sha256=(sha256 or {}).get(kind) or sha256_file(path),
            size_bytes=path.stat().st_size,
            release_date=release_date,
            meta=dict((meta or {}).get(kind) or {}) or None,
        )
        reduction.products.append(product)
        products.append(product)
    return products
