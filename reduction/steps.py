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
            raise TypeError(
                f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
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


class StepContractError(TypeError):
    """A step was called without a declared input, with an undeclared one, or gave a declared output no value."""


class Step(abc.ABC, Generic[P, R]):
    """A pipeline step. See the module docstring.

    Call the step (``step(params, **inputs)``) rather than :meth:`run`: the call checks the
    contract: ``params`` is the step's parameter class, every declared input is given, no
    undeclared input is (``optional_inputs`` may be left out), and the result has every
    declared output as an attribute.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Parameters: ClassVar[type[StepParameters]]
    inputs: ClassVar[tuple[str, ...]]
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def run(self, params: P, **inputs: Any) -> R:
        """Run the step on ``inputs`` with ``params`` and return its result object."""

    def __call__(self, params: P, **inputs: Any) -> R:
        if not isinstance(params, self.Parameters):
            raise StepContractError(
                f"step {self.name}: parameters must be {self.Parameters.__name__}, not {type(params).__name__}"
            )
        missing = [n for n in self.inputs if n not in inputs]
        unknown = sorted(set(inputs) - set(self.inputs) - set(self.optional_inputs))
        if missing or unknown:
            raise StepContractError(
                f"step {self.name}: "
                + "; ".join(
                    ([f"missing input(s) {', '.join(missing)}"] if missing else [])
                    + ([f"undeclared input(s) {', '.join(unknown)}"] if unknown else [])
                )
                + f" (declared: {', '.join(self.inputs)}; optional: {', '.join(self.optional_inputs) or 'none'})"
            )
        result = self.run(params, **inputs)
        absent = [n for n in self.outputs if not hasattr(result, n)]
        if absent:
            raise StepContractError(
                f"step {self.name}: its result ({type(result).__name__}) lacks the declared "
                f"output(s) {', '.join(absent)}"
            )
        return result

    def describe(self) -> dict[str, Any]:
        """Name, version, inputs, outputs and parameter fields with defaults."""
        return {
            "name": self.name,
            "version": self.version,
            "inputs": list(self.inputs),
            "optional_inputs": list(self.optional_inputs),
            "outputs": list(self.outputs),
            "parameters": {
                f.name: (None if f.default is dataclasses.MISSING else f.default)
                for f in dataclasses.fields(self.Parameters)
            },
        }
