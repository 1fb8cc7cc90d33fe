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
import functools
import hashlib
import inspect
import json
import re
import types
import typing
from typing import Any, ClassVar, Generic, Iterator, TypeVar


@dataclasses.dataclass(frozen=True)
class StepParameters:
    """Base of every step's parameter dataclass (subclasses are frozen too).

    A field whose docstring type line lists its values (``algorithm : {'pca', 'cadi'}``) is checked
    against them here; subclasses add their own checks in ``__post_init__`` and call this one.
    """

    def __post_init__(self) -> None:
        for name, (_help, choices) in attribute_docs(type(self)).items():
            value = getattr(self, name, None)
            if choices and value is not None and value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")

    def _at_least(self, **minimums: float) -> None:
        """Refuse a field below its minimum (``self._at_least(ncomp=1)``), naming the field."""
        for name, minimum in minimums.items():
            if getattr(self, name) is not None and getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}; got {getattr(self, name)!r}")

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


@dataclasses.dataclass(frozen=True)
class ParameterField:
    """One leaf field of a (nested) parameter dataclass, as the CLI, the widgets and the docs show it.

    Attributes
    ----------
    path : tuple of str
        Field names from the top class down, e.g. ``("subtraction", "ncomp")``.
    kind : type
        The value type (``int``, ``float``, ``bool``, ``str``), ``X | None`` unwrapped.
    optional : bool
        The field accepts None.
    default : Any
        The class default (``dataclasses.MISSING`` for a field the caller must give).
    help : str
        The description of the field in its class's numpydoc ``Attributes`` section.
    choices : tuple of str or None
        The allowed values, from a ``{'a', 'b'}`` type line in that section.
    """

    path: tuple[str, ...]
    kind: type
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@functools.lru_cache(maxsize=None)
def attribute_docs(params_class: type) -> dict[str, tuple[str, tuple[str, ...] | None]]:
    """``{field: (help, choices)}`` from the numpydoc ``Attributes`` section of a class docstring.

    The docstring is the one place a parameter is described: the command-line help, the widget
    tooltips and the documentation are read from it. ``a, b : float`` describes both fields; a type
    line ``{'x', 'y'}`` gives the allowed values.
    """
    doc = inspect.cleandoc(params_class.__doc__ or "")
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes") + 2
    except StopIteration:
        return {}
    docs: dict[str, tuple[str, tuple[str, ...] | None]] = {}
    current: list[str] = []
    text: list[str] = []
    choices: tuple[str, ...] | None = None

    def flush() -> None:
        for name in current:
            docs[name] = (" ".join(text).strip(), choices)

    body = lines[start:]
    for index, line in enumerate(body):
        if not line.strip():
            continue
        if line.startswith(" "):
            text.append(line.strip())
            continue
        if index + 1 < len(body) and re.fullmatch(r"-{3,}", body[index + 1].strip()):
            break  # the next section
        flush()
        names, _, kind = re.split(r"\s:(?:\s|$)", line + " ", maxsplit=1)[0], None, line.partition(" : ")[2]
        current = [n.strip() for n in names.split(",") if n.strip()]
        text = []
        found = re.match(r"^\{(.*)\}", kind.strip())
        choices = tuple(c.strip().strip("'\"") for c in found[1].split(",")) if found else None
    flush()
    return docs


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return kind, False


def parameter_fields(params_class: type[StepParameters], prefix: tuple[str, ...] = ()) -> Iterator[ParameterField]:
    """Every leaf field of ``params_class``, nested parameter groups flattened (depth first, in order)."""
    hints = typing.get_type_hints(params_class)
    docs = attribute_docs(params_class)
    for f in dataclasses.fields(params_class):
        kind, optional = _unwrap_optional(hints.get(f.name, Any))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING  # required: the step's caller gives it
        if isinstance(kind, type) and issubclass(kind, StepParameters):
            yield from parameter_fields(kind, prefix + (f.name,))
            continue
        help_text, choices = docs.get(f.name, ("", None))
        yield ParameterField(prefix + (f.name,), kind, optional, default, help_text, choices)


def replace_path(params: StepParameters, path: tuple[str, ...], value: Any) -> StepParameters:
    """A copy of ``params`` with the (nested) field ``path`` set to ``value`` (the class checks apply)."""
    head, *rest = path
    if rest:
        return dataclasses.replace(params, **{head: replace_path(getattr(params, head), tuple(rest), value)})
    return dataclasses.replace(params, **{head: value})


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
