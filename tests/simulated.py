"""The raw inputs of a simulated observation, from the simulator's truth (as the catalog would give them)."""

from __future__ import annotations

from pathlib import Path

from reduction.preprocess import ObservationFiles


def observation_files(root: Path, truth: dict, entry: dict) -> ObservationFiles:
    """``ObservationFiles`` of truth ``entry`` in the archive at ``root`` (IFS lamps included)."""
    paths = {f["name"]: root / f["path"] for f in truth["files"].values()}
    expected = entry["expected_calibrations"]

    def per_dit(key):
        return {float(dit): tuple(paths[n] for n in match["files"]) for dit, match in (expected.get(key) or {}).items()}

    def files(key):
        return tuple(paths[n] for n in (expected.get(key) or {}).get("files", []))

    return ObservationFiles(
        instrument=entry["instrument"],
        filter=entry["filter"],
        science=tuple(paths[n] for n in entry["files"]["science"]),
        center=tuple(paths[n] for n in entry["files"]["center"]),
        flux=tuple(paths[n] for n in entry["files"]["flux"]),
        skies=per_dit("skies"),
        backgrounds=per_dit("backgrounds"),
        darks=per_dit("darks"),
        flats=files("flats"),
        specpos=files("specpos"),
        wave=files("waves"),
    )
