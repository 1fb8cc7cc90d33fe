"""A parameter form built from a step's frozen parameter dataclass.

Every field of a :class:`reduction.steps.StepParameters` dataclass becomes a
widget chosen from its type (bool → checkbox, int → integer box, float → float
box, str with choices → dropdown, optional numbers → text where empty
means None, nested parameter groups → a sub-form in an accordion). A new
field in a step's dataclass therefore appears in the panel without widget
code. The choices and the tooltips come from the numpydoc ``Attributes`` section of the
dataclass (:func:`reduction.steps.attribute_docs`), the same text the command-line help shows.
:attr:`ParameterForm.value` builds the dataclass (its own checks apply),
so the widget, the notebook and the batch use the same object.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import ipywidgets as widgets

from reduction.steps import StepParameters, attribute_docs

_STYLE = {"description_width": "150px"}
_LAYOUT = widgets.Layout(width="320px")


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


class _OptionalField(widgets.Text):
    """Text box for ``X | None``: empty means None."""

    def __init__(self, inner: type, **kwargs: Any):
        self.inner = inner
        super().__init__(placeholder="(none)", **kwargs)

    def get(self) -> Any:
        text = self.value.strip()
        if not text or text.lower() == "none":
            return None
        try:
            return self.inner(text)
        except ValueError:
            raise ValueError(
                f"{self.description.rstrip(':')} must be a {self.inner.__name__} or empty, got {text!r}"
            ) from None

    def set(self, value: Any) -> None:
        self.value = "" if value is None else str(value)


class ParameterForm(widgets.VBox):
    """Widgets for every field of ``params_class``; :attr:`value` is the parameter object.

    Parameters
    ----------
    params_class : type[StepParameters]
        A frozen parameter dataclass.
    value : StepParameters, optional
        Initial values (default: the class defaults).
    exclude : iterable of str
        Field names not to show (they keep their value).
    """

    def __init__(
        self,
        params_class: type[StepParameters],
        value: StepParameters | None = None,
        exclude: typing.Iterable[str] = (),
        title: str | None = None,
    ):
        if not (dataclasses.is_dataclass(params_class) and issubclass(params_class, StepParameters)):
            raise TypeError(f"{params_class!r} is not a StepParameters dataclass")
        self.params_class = params_class
        self.exclude = set(exclude)
        self._initial = value if value is not None else params_class()
        hints = typing.get_type_hints(params_class)
        docs = attribute_docs(params_class)
        self.fields: dict[str, widgets.Widget] = {}
        self.subforms: dict[str, ParameterForm] = {}
        simple: list[widgets.Widget] = []
        for f in dataclasses.fields(params_class):
            if f.name in self.exclude:
                continue
            current = getattr(self._initial, f.name)
            kind, optional = _unwrap_optional(hints.get(f.name, type(current)))
            if isinstance(kind, type) and issubclass(kind, StepParameters):
                self.subforms[f.name] = ParameterForm(kind, current)
                continue
            help_text, choices = docs.get(f.name, ("", None))
            widget = self._widget(f.name, kind, optional, current, choices)
            widget.tooltip = help_text or None
            self.fields[f.name] = widget
            simple.append(widget)
        children: list[widgets.Widget] = []
        if title:
            children.append(widgets.HTML(f"<b>{title}</b>"))
        if self.subforms:
            accordion = widgets.Accordion(children=list(self.subforms.values()))
            for index, name in enumerate(self.subforms):
                accordion.set_title(index, name)
            accordion.selected_index = 0
            children.append(accordion)
            self.accordion = accordion
        if simple:
            children.append(
                widgets.VBox(simple)
                if not self.subforms
                else widgets.VBox([widgets.HTML("<i>other parameters</i>"), *simple])
            )
        super().__init__(children=children)

    @staticmethod
    def _widget(name: str, kind: Any, optional: bool, current: Any, choices: tuple[str, ...] | None) -> widgets.Widget:
        label = name.replace("_", " ")
        common = dict(description=label, style=_STYLE, layout=_LAYOUT)
        if optional:
            widget = _OptionalField(kind if kind in (int, float, str) else str, **common)
            widget.set(current)
            return widget
        if kind is bool:
            return widgets.Checkbox(value=bool(current), indent=True, **common)
        if kind is int:
            return widgets.IntText(value=int(current), **common)
        if kind is float:
            return widgets.FloatText(value=float(current), **common)
        if kind is str and choices and current in choices:
            return widgets.Dropdown(options=list(choices), value=current, **common)
        return widgets.Text(value="" if current is None else str(current), **common)

    # -- values
    @property
    def value(self) -> StepParameters:
        """The parameter object (raises ``ValueError``/``TypeError`` with a message for a person)."""
        values: dict[str, Any] = {}
        for name, widget in self.fields.items():
            values[name] = widget.get() if isinstance(widget, _OptionalField) else widget.value
        for name, form in self.subforms.items():
            values[name] = form.value
        return dataclasses.replace(self._initial, **values)

    @value.setter
    def value(self, params: StepParameters) -> None:
        if not isinstance(params, self.params_class):
            raise TypeError(f"expected {self.params_class.__name__}, got {type(params).__name__}")
        self._initial = params
        for name, widget in self.fields.items():
            current = getattr(params, name)
            if isinstance(widget, _OptionalField):
                widget.set(current)
            else:
                widget.value = current
        for name, form in self.subforms.items():
            form.value = getattr(params, name)

    def widget(self, path: str) -> widgets.Widget:
        """The widget of a (dotted) field name, e.g. ``form.widget('subtraction.ncomp')``."""
        head, _, rest = path.partition(".")
        if rest:
            return self.subforms[head].widget(rest)
        return self.fields[head]

    def set(self, **values: Any) -> "ParameterForm":
        """Set widgets by (dotted, with ``__``) field name, as a person would: ``set(subtraction__ncomp=5)``."""
        for key, value in values.items():
            widget = self.widget(key.replace("__", "."))
            if isinstance(widget, _OptionalField):
                widget.set(value)
            else:
                widget.value = value
        return self
