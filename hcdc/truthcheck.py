"""Compare the catalog with a simulated archive's ground truth (``truth.json``).

Used by ``make demo`` and the tests: every simulated observation must be in
the catalog with exactly its science, CENTER and FLUX files, and with exactly
the calibration files the simulator intended (darks, backgrounds and skies
per DIT, flats, IFS lamps), and the catalog must hold nothing more.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .catalog.models import Observation, ObservationCalibration, RawFile

#: truth.json's expected_calibrations key -> catalog calibration role
ROLES = {
    "darks": "dark",
    "backgrounds": "background",
    "skies": "sky",
    "flats": "flat",
    "waves": "wave",
    "specpos": "specpos",
}


@dataclass
class TruthComparison:
    expected_observations: int = 0
    catalog_observations: int = 0
    matched: int = 0
    problems: list[str] = field(default_factory=list)
    links_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.matched == self.expected_observations == self.catalog_observations

    def render(self) -> str:
        lines = [
            f"truth check: {self.matched}/{self.expected_observations} simulated observations found, "
            f"{self.catalog_observations} raw observations in the catalog, "
            f"{self.links_checked} calibration associations compared: "
            + ("ALL MATCH" if self.ok else f"{len(self.problems)} PROBLEM(S)")
        ]
        lines += [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        return "\n".join(lines)


def _expected_links(entry: dict[str, Any]) -> dict[tuple[str, float | None], set[str]]:
    out: dict[tuple[str, float | None], set[str]] = {}
    for key, role in ROLES.items():
        value = entry.get("expected_calibrations", {}).get(key)
        if not value:
            continue
        if "files" in value:  # one match (flats, IFS lamps)
            out[(role, None)] = {Path(f).name for f in value["files"]}
        else:  # per DIT
            for dit, match in value.items():
                out[(role, round(float(dit), 2))] = {Path(f).name for f in match["files"]}
    return out


def compare_with_truth(session: Session, truth_path: Path) -> TruthComparison:
    """Compare the catalog's raw observations with ``truth.json``."""
    truth = json.loads(Path(truth_path).read_text())
    result = TruthComparison()
    expected = truth["observations"]
    result.expected_observations = len(expected)
    observations = list(session.scalars(select(Observation).where(Observation.origin == "raw")))
    result.catalog_observations = len(observations)
    by_key: dict[tuple, list[Observation]] = defaultdict(list)
    for obs in observations:
        by_key[(obs.instrument, obs.night.isoformat(), obs.ob_id)].append(obs)
    files_by_obs: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for obs_id, kind, path in session.execute(
        select(RawFile.observation_id, RawFile.kind, RawFile.path).where(RawFile.observation_id.isnot(None))
    ):
        files_by_obs[obs_id][kind].add(Path(path).name)
    links: dict[int, dict[tuple[str, float | None], set[str]]] = defaultdict(lambda: defaultdict(set))
    for obs_id, role, dit, path in session.execute(
        select(
            ObservationCalibration.observation_id,
            ObservationCalibration.role,
            ObservationCalibration.for_dit_s,
            RawFile.path,
        ).join(RawFile, RawFile.id == ObservationCalibration.raw_file_id)
    ):
        links[obs_id][(role, None if dit is None else round(dit, 2))].add(Path(path).name)

    for entry in expected:
        label = f"{entry['obs_id']} ({entry['instrument']}, {entry['target']})"
        candidates = by_key.get((entry["instrument"], entry["night"], entry["ob_id"]), [])
        if len(candidates) != 1:
            result.problems.append(f"{label}: {len(candidates)} catalog observation(s) instead of 1")
            continue
        obs = candidates[0]
        result.matched += 1
        if entry.get("release_date") and obs.release_date.isoformat() != entry["release_date"]:
            result.problems.append(f"{label}: release date {obs.release_date} instead of {entry['release_date']}")
        for kind in ("science", "center", "flux"):
            want = {Path(f).name for f in entry["files"].get(kind, [])}
            have = files_by_obs[obs.id].get(kind, set())
            if want != have:
                result.problems.append(
                    f"{label}: {kind} files differ (missing {sorted(want - have)[:3]}, extra {sorted(have - want)[:3]})"
                )
        want_links = _expected_links(entry)
        have_links = links.get(obs.id, {})
        for need in sorted(set(want_links) | set(have_links), key=str):
            result.links_checked += 1
            want = want_links.get(need, set())
            have = have_links.get(need, set())
            if want != have:
                result.problems.append(
                    f"{label}: {need[0]} for DIT {need[1]}: expected {sorted(want)[:3]}"
                    f"{'...' if len(want) > 3 else ''}, catalog has {sorted(have)[:3]}"
                    f"{'...' if len(have) > 3 else ''}"
                )
    return result
