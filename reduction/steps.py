"""What a pipeline step is: declared inputs and outputs, frozen parameters, one result.

PynPoint's idea with modern typing. A step is a class with

* ``name`` and ``version`` (the version is bumped whenever the step's science
  changes, which makes every product it made out of date for ``hcdc reprocess``),
* ``Parameters``, a frozen dataclass whose fields are the *only* knobs,
* ``inputs`` and ``outputs``, the names of what it reads and writes,
* ``run(params, **inputs)`` returning one result object (never a tuple whose
  shape depends on flags).

The batch pipeline, the notebooks and the widgets all call ``run`` of the same
class with the same parameter object, so an interactive session can be replayed.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from typing import Any, ClassVar, Generic, TypeVar


@dataclasses.dataclass(frozen=True)
class StepParameters:
    """Base of every step's parameter dataclass (subclasses are frozen too)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_jsonable))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StepParameters":
        """Build from a dict, refusing unknown keys (a typo must not be ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(names))}")
        converted = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                value = values[f.name]
                nested = f.default if isinstance(f.default, StepParameters) else None
                if nested is not None and isinstance(value, dict):
                    value = type(nested).from_dict(value)  # nested parameter groups
                elif isinstance(value, list):
                    value = tuple(value)
                converted[f.name] = value
        return cls(**converted)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the parameters (for up-to-date checks)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"not JSON-serialisable: {value!r}")


P = TypeVar("P", bound=StepParameters)
R = TypeVar("R")


class Step(abc.ABC, Generic[P, R]):
    """A pipeline step. See the module docstring."""

    name: ClassVar[str]
    version: ClassVar[str]
    Parameters: ClassVar[type[StepParameters]]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def run(self, params: P, **inputs: Any) -> R:
        """Run the step on ``inputs`` with ``params`` and return its result object."""

    def describe(self) -> dict[str, Any]:
        """Name, version, inputs, outputs and parameter fields with defaults."""
        return {
            "name": self.name,
            "version": self.version,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "parameters": {f.name: (None if f.default is dataclasses.MISSING else f.default)
                           for f in dataclasses.fields(self.Parameters)},
        }
