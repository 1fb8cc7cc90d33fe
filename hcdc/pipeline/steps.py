"""The pipeline steps as the notebooks (and widgets) call them.

``run_step(name, observation_id, parameters)`` is the single call of a
pipeline notebook: it runs the step on one catalog observation with the same
functions the command line uses, records everything in the catalog, and
returns a :class:`StepOutcome` whose ``figure()`` shows what a person checks.
It raises :class:`StepFailed` when the step failed (after recording why), so
that papermill marks the executed notebook as failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hcdc.outcome import StepOutcome
from reduction.steps import Step, StepParameters


class StepFailed(RuntimeError):
    """A pipeline step failed; the reason is recorded in its reduction row."""


@dataclass(frozen=True)
class StepSpec:
    """A pipeline step: the science step it runs (name, version, parameters), its notebook and runner.

    The name, version and parameter class are the science step's own (``reduction``), never a
    copy: bumping ``Step.version`` makes every reduction of that step out of date.
    """

    step: type[Step]
    notebook: str
    runner: Callable[..., Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def version(self) -> str:
        return self.step.version

    @property
    def parameters(self) -> type[StepParameters]:
        return self.step.Parameters


def _preprocess_runner(catalog, observation_id, data_dir, params, reduction_id, campaign_id):
    from hcdc.processing import preprocess_catalog_observation

    return preprocess_catalog_observation(
        catalog, observation_id, data_dir, params, campaign_id=campaign_id, reduction_id=reduction_id
    )


def _postprocess_runner(catalog, observation_id, data_dir, params, reduction_id, campaign_id):
    from hcdc.postprocessing import postprocess_catalog_observation

    return postprocess_catalog_observation(
        catalog, observation_id, data_dir, params, campaign_id=campaign_id, reduction_id=reduction_id
    )


def _spectral_runner(catalog, observation_id, data_dir, params, reduction_id, campaign_id):
    from hcdc.spectral_processing import postprocess_spectral_catalog_observation

    return postprocess_spectral_catalog_observation(
        catalog, observation_id, data_dir, params, campaign_id=campaign_id, reduction_id=reduction_id
    )


def step_specs() -> dict[str, StepSpec]:
    """The steps, in pipeline order (the spectral post-processing takes the place of the post-processing
    for spectral cubes: SPHERE IFS)."""
    from reduction.postproc.pipeline import PostprocessStep
    from reduction.postproc.spectral import SpectralPostprocessStep
    from reduction.preprocess import Preprocess

    specs = (
        StepSpec(Preprocess, "preprocess.py", _preprocess_runner),
        StepSpec(PostprocessStep, "postprocess.py", _postprocess_runner),
        StepSpec(SpectralPostprocessStep, "postprocess-spectral.py", _spectral_runner),
    )
    return {spec.name: spec for spec in specs}


def parse_parameters(spec: StepSpec, parameters: str | dict | StepParameters | None) -> StepParameters:
    """Parameters from JSON text, a dict or an instance (unknown keys are an error)."""
    if isinstance(parameters, StepParameters):
        return parameters
    if parameters is None or parameters == "":
        values: dict = {}
    elif isinstance(parameters, str):
        values = json.loads(parameters)
    else:
        values = dict(parameters)
    return spec.parameters.from_dict(values)


def run_step(
    step: str,
    observation_id: int,
    parameters: str | dict | StepParameters | None = None,
    *,
    reduction_id: int | None = None,
    campaign_id: int | None = None,
    catalog=None,
    data_dir: Path | None = None,
) -> StepOutcome:
    """Run pipeline step ``step`` on catalog observation ``observation_id`` (see module docstring)."""
    from hcdc.catalog.db import Catalog
    from hcdc.settings import get_settings

    specs = step_specs()
    if step not in specs:
        raise KeyError(f"unknown step {step!r}; steps: {', '.join(specs)}")
    spec = specs[step]
    params = parse_parameters(spec, parameters)
    settings = get_settings()
    catalog = catalog or Catalog(settings.resolved_catalog_url)
    data_dir = Path(data_dir or settings.data_dir)
    outcome = spec.runner(catalog, int(observation_id), data_dir, params, reduction_id, campaign_id)
    if outcome.status != "done":
        raise StepFailed(f"{step} of observation {observation_id} failed: {outcome.error}")
    return outcome
