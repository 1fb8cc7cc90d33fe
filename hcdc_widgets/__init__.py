"""ipywidgets panels for interactive reduction (issue "JupyterHub for PIs").

Widgets only edit the steps' parameter objects and call the same functions as
the batch pipeline, so any interactive session can be replayed in batch:

* :class:`ParameterForm` — a form built from any ``StepParameters`` dataclass;
* :class:`ReductionPanel` — pick one of my observations, run the post-processing,
  look at the residuals, S/N map and contrast curve, inspect a candidate (NEGFC),
  save it as my reduction, export the papermill job;
* :class:`InteractiveReduction` — the same without widgets.
"""

from .forms import ParameterForm
from .panel import ReductionPanel
from .session import InteractiveReduction, describe_error

__all__ = ["InteractiveReduction", "ParameterForm", "ReductionPanel", "describe_error"]
