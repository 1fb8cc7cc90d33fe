"""Command-line options generated from a step's parameter dataclass.

A step's parameters are described once, in its frozen dataclass and the numpydoc
``Attributes`` section of its docstring (:func:`reduction.steps.parameter_fields`).
:func:`parameter_options` turns every leaf field into a click option with that help,
type, choices and default; :func:`parameters_from_options` builds the parameter object
back from what was given. A field added to a dataclass is therefore an option at once.

Naming: a field is ``--field-name`` (underscores become dashes). A name that appears in
several parameter groups (``ncomp`` of the PSF subtraction and of the NEGFC model) gets one
option per group, ``--group-field-name``, plus ``--field-name`` which sets all of them.
Options default to "not given": the dataclass default applies (shown in the help).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, Iterable

import click

from reduction.steps import ParameterField, StepParameters, parameter_fields, replace_path

_PREFIX = "param__"


def _dest(path: tuple[str, ...]) -> str:
    return _PREFIX + "__".join(path)


def _option_name(parts: Iterable[str]) -> str:
    return "--" + "-".join(p.replace("_", "-") for p in parts)


def _click_type(field: ParameterField) -> Any:
    if field.choices:
        return click.Choice(list(field.choices))
    if field.kind is int:
        return int
    if field.kind is float:
        return float
    return str


def _help(text: str, default: Any) -> str:
    shown = "none" if default is None else default
    text = re.sub(r"``([^`]+)``", r"\1", text)  # reStructuredText literals read plainly in a terminal
    return f"{text} [default: {shown}]".strip()


def option_table(params_class: type[StepParameters]) -> list[tuple[str, tuple[tuple[str, ...], ...], ParameterField]]:
    """``(option name, field paths it sets, describing field)`` for every option of ``params_class``."""
    fields = list(parameter_fields(params_class))
    by_name: dict[str, list[ParameterField]] = defaultdict(list)
    for field in fields:
        by_name[field.name].append(field)
    table = []
    for field in fields:
        group = by_name[field.name]
        if len(group) > 1 and field is group[0]:  # the option setting them all, listed before its members
            table.append((_option_name((field.name,)), tuple(f.path for f in group), field))
        table.append((_option_name(field.path if len(group) > 1 else (field.name,)), (field.path,), field))
    return table


def parameter_options(
    params_class: type[StepParameters],
    *,
    flags: dict[str, tuple[str, Any]] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator adding one click option per parameter of ``params_class`` (see module docstring).

    Parameters
    ----------
    params_class : type[StepParameters]
        The step's parameter dataclass.
    flags : dict, optional
        Extra flags kept for existing scripts, ``{"--recenter-positive": ("recenter_negative", False)}``:
        the flag sets that (dotted) field to that value.
    """
    table = option_table(params_class)
    extra = flags or {}

    def decorate(function: Callable) -> Callable:
        # click lists options in the order of the decorators, top first: apply the last one first
        for flag, (dotted, value) in reversed(list(extra.items())):
            function = click.option(
                flag,
                _PREFIX + "flag__" + flag.lstrip("-").replace("-", "_"),
                is_flag=True,
                default=False,
                help=f"Same as setting {dotted} to {value}.",
            )(function)
        for option, paths, field in reversed(table):
            dest = _dest(paths[0]) if len(paths) == 1 else _PREFIX + "all__" + field.name
            text = field.help
            if len(paths) > 1:
                text = f"Sets {' and '.join('.'.join(p) for p in paths)}: {text}"
            if field.kind is bool:
                negative = "--no-" + option[2:]
                decorator = click.option(f"{option}/{negative}", dest, default=None, help=_help(text, field.default))
            else:
                decorator = click.option(
                    option, dest, type=_click_type(field), default=None, help=_help(text, field.default)
                )
            function = decorator(function)
        return function

    return decorate


def parameters_from_options(
    params_class: type[StepParameters],
    options: dict[str, Any],
    *,
    flags: dict[str, tuple[str, Any]] | None = None,
    base: StepParameters | None = None,
) -> tuple[StepParameters, dict[str, Any]]:
    """The parameter object from the generated options; returns it and the remaining (non-parameter) options.

    Options that set several fields apply first, so ``--ncomp 10 --characterisation-ncomp 5`` sets the
    subtraction to 10 and the NEGFC model to 5. A value the dataclass refuses raises ``click.BadParameter``.
    """
    rest = {k: v for k, v in options.items() if not k.startswith(_PREFIX)}
    params = base if base is not None else params_class()
    table = option_table(params_class)
    ordered = sorted(table, key=lambda row: -len(row[1]))  # shared options first, specific ones override
    try:
        for option, paths, field in ordered:
            dest = _dest(paths[0]) if len(paths) == 1 else _PREFIX + "all__" + field.name
            value = options.get(dest)
            if value is None:
                continue
            for path in paths:
                params = replace_path(params, path, value)
        for flag, (dotted, value) in (flags or {}).items():
            if options.get(_PREFIX + "flag__" + flag.lstrip("-").replace("-", "_")):
                params = replace_path(params, tuple(dotted.split(".")), value)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc
    return params, rest
