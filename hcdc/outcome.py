"""What a step did to one observation: the one outcome type of the pipeline, the commands and the notebooks.

The pre- and post-processing runners return it, ``run_step`` (a pipeline notebook's one call)
shows it, the campaign runner adds its times and attempts, and the commands print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepOutcome:
    """One step on one observation.

    ``status`` is ``done``, ``failed``, ``up-to-date`` (an earlier reduction with the same
    signature stands) or ``skipped`` (with the reason in ``error``).
    """

    observation_id: int
    step: str
    status: str
    reduction_id: int | None = None
    error: str | None = None
    products: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  #: what was done differently than asked, said per observation
    n_frames: int = 0
    n_rejected: int = 0
    n_detections: int = 0
    seconds: float = 0.0  #: wall time of the step as the campaign saw it
    compute_seconds: float | None = None  #: the reduction row's start to finish (inside the notebook)
    science_seconds: float | None = None  #: the science alone: compute + write products (step's own measure)
    attempts: int = 0
    details: Any = field(default=None, repr=False)

    def _repr_markdown_(self) -> str:
        lines = [
            f"**{self.step}** of observation {self.observation_id}: **{self.status}** (reduction {self.reduction_id})"
        ]
        if self.error:
            lines.append(f"\n```\n{self.error}\n```")
        for problem in self.problems:
            lines.append(f"- note: {problem}")
        for kind, path in sorted(self.products.items()):
            lines.append(f"- `{kind}`: `{path}`")
        return "\n".join(lines)

    def figure(self):
        """The figures a person checks for this step, as a PNG image (in the notebook and its HTML report).

        Rendered here and the matplotlib figure closed: the figure functions use the Agg
        backend (they also run outside kernels), whose figures a notebook would show as
        text only, and a warm kernel must not accumulate open figures.
        """
        import io

        import matplotlib.pyplot as plt
        from IPython.display import Image

        from hcdc.pipeline import figures

        if self.step == "preprocess":
            return Image(data=figures.preprocess_image(self.products), format="png")
        if self.step == "postprocess-spectral":
            fig = figures.spectral_figure(self.products)
        else:
            fig = figures.postprocess_figure(self.products)
        buffer = io.BytesIO()
        try:
            fig.savefig(buffer, format="png", dpi=figures.DPI, pil_kwargs={"compress_level": 1})
        finally:
            plt.close(fig)
        return Image(data=buffer.getvalue(), format="png")
