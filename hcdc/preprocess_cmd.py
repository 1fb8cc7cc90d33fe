"""``hcdc preprocess``: its options come from the pre-processing's parameter dataclass, whose import costs
a second of the science's imports; :mod:`hcdc.cli` loads this module only when the command is used."""

from __future__ import annotations

import sys

import click

from reduction.preprocess.model import PreprocessParameters

from .cli import _catalog, _echo_err, _settings
from .cli_parameters import parameter_options, parameters_from_options


@click.command("preprocess")
@click.option(
    "--observation",
    "observation_ids",
    multiple=True,
    type=int,
    help="Observation id (repeatable). Default: every raw SPHERE (IRDIS and IFS) observation without a "
    "done pre-processing.",
)
@click.option("--redo", is_flag=True, help="Pre-process again even when a done reduction exists.")
@parameter_options(PreprocessParameters)
def preprocess(observation_ids: tuple[int, ...], redo: bool, **options) -> None:
    """Calibrate and centre raw observations into ADI cubes (products + catalog rows).

    One failing observation is recorded with its reason and does not stop the others.
    The parameter options are those of the pipeline's ``preprocess`` step (the same
    dataclass the campaigns and the widgets use).
    """
    from sqlalchemy import select

    from .catalog.models import Observation, Reduction
    from .pipeline.steps import step_specs

    params, _ = parameters_from_options(PreprocessParameters, options)
    spec = step_specs()["preprocess"]

    settings = _settings()
    cat = _catalog()
    with cat.session() as session:
        if observation_ids:
            ids = list(observation_ids)
            known = set(session.scalars(select(Observation.id).where(Observation.id.in_(ids))))
            for missing in sorted(set(ids) - known):
                raise click.ClickException(f"no observation {missing} in the catalog ({cat.url})")
        else:
            ids = list(
                session.scalars(
                    select(Observation.id)
                    .where(Observation.origin == "raw", Observation.instrument.in_(("SPHERE-IRDIS", "SPHERE-IFS")))
                    .order_by(Observation.id)
                )
            )
        if not redo:
            done = set(
                session.scalars(
                    select(Reduction.observation_id).where(Reduction.step == "preprocess", Reduction.status == "done")
                )
            )
            skipped = [i for i in ids if i in done]
            ids = [i for i in ids if i not in done]
            if skipped:
                _echo_err(f"{len(skipped)} observation(s) already pre-processed (use --redo)")
    from tqdm.auto import tqdm

    failed = 0
    for observation_id in tqdm(ids, desc="pre-processing", unit="obs", disable=not sys.stderr.isatty() or None):
        outcome = spec.runner(cat, observation_id, settings.data_dir, params, None, None)
        if outcome.status == "done":
            note = f"; {len(outcome.problems)} note(s): " + "; ".join(outcome.problems) if outcome.problems else ""
            _echo_err(
                f"observation {observation_id}: done, {outcome.n_frames} frames "
                f"({outcome.n_rejected} rejected) -> {outcome.products.get('cube')}{note}"
            )
        else:
            failed += 1
            _echo_err(f"observation {observation_id}: FAILED: {outcome.error.splitlines()[0]}")
    _echo_err(f"pre-processed {len(ids) - failed} observation(s), {failed} failed")
