"""What a campaign would do, without doing it (``hcdc reprocess --plan``).

For every selected observation, each step of its chain is

* ``up-to-date``: a done reduction of this observation has the step's signature
  (step, version, parameters, input hashes): the campaign would only attach it;
* ``run``: its inputs exist and no done reduction matches: the campaign would run it;
* ``after <step>``: an earlier step of the chain runs first, so its input is not
  known yet (it runs when that step succeeds);
* ``no input``: nothing to run on (no done pre-processing to post-process);

and an observation the pipeline cannot process says why (``skipped``). The
decision is the one :func:`hcdc.pipeline.runner.run_chain` takes, from the
same signature (:func:`~hcdc.pipeline.runner.step_inputs`), computed for every
observation in a few queries: planning the whole catalog stays a matter of
seconds. Nothing is written: no campaign, no reduction.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from ..catalog.db import Catalog
from ..catalog.models import Reduction
from .campaign import load_observations, observation_steps, select_observations
from .runner import IN_CHUNK, SPECTRAL_STEP, STEP_ORDER, signature_of, step_inputs


@dataclass(frozen=True)
class StepPlan:
    step: str
    status: str  #: ``up-to-date``, ``run``, ``after <step>`` or ``no input``
    reduction_id: int | None = None  #: the done reduction an up-to-date step would attach


@dataclass(frozen=True)
class ObservationPlan:
    observation_id: int
    label: str  #: target, night, instrument
    steps: tuple[StepPlan, ...]
    skipped: str | None = None  #: why (some of) the campaign's steps are not in this chain

    @property
    def has_work(self) -> bool:
        return any(s.status != "up-to-date" for s in self.steps)


@dataclass
class CampaignPlan:
    steps: tuple[str, ...]
    observations: list[ObservationPlan] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, Counter]:
        """Per step of the chains, how many observations are in each status."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for plan in self.observations:
            for step in plan.steps:
                counts[step.step][step.status.split(" ")[0]] += 1
        return dict(counts)

    def skipped(self) -> Counter:
        """Why observations are (partly) skipped, with how many each."""
        return Counter(p.skipped for p in self.observations if p.skipped)

    def summary(self) -> str:
        """A few lines: the numbers per step and the reasons for skipping."""
        n_work = sum(1 for p in self.observations if p.has_work)
        lines = [
            f"plan: {len(self.observations)} observation(s), {n_work} with work to do "
            f"(planned in {self.seconds:.1f} s; nothing run)"
        ]
        for step, counts in self.counts().items():
            parts = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
            lines.append(f"  {step}: {parts}")
        for reason, n in self.skipped().most_common():
            lines.append(f"  skipped ({n}): {reason}")
        return "\n".join(lines)

    def rows(self, everything: bool = False) -> list[dict]:
        """One row per observation with work to do (``everything``: every observation)."""
        return [
            {
                "observation_id": p.observation_id,
                "observation": p.label,
                "steps": "; ".join(
                    f"{s.step} {s.status}" + (f" (reduction {s.reduction_id})" if s.reduction_id else "")
                    for s in p.steps
                ),
                "skipped": p.skipped or "",
            }
            for p in self.observations
            if everything or p.has_work or p.skipped
        ]


def plan_campaign(
    catalog: Catalog,
    *,
    query: str | None = None,
    parameters: dict[str, dict] | None = None,
    steps=STEP_ORDER,
) -> CampaignPlan:
    """What :func:`hcdc.pipeline.campaign.reprocess` would do with these arguments (see the module docstring)."""
    from .campaign import load_parameters
    from .steps import parse_parameters, step_specs

    started = time.perf_counter()
    parameters = parameters if parameters is not None else load_parameters()
    steps = tuple(s for s in STEP_ORDER if s in set(steps))
    specs = step_specs()
    plan = CampaignPlan(steps=steps)
    with catalog.session() as session:
        ids = select_observations(session, query)
        observations, labels = load_observations(session, ids)
        chains = {i: observation_steps(observations[i], steps) for i in ids}
        chain_steps = sorted({s for chain, _ in chains.values() for s in chain}, key=_chain_order)
        fingerprints = {
            step: (specs[step].version, parse_parameters(specs[step], parameters.get(step, {})).fingerprint())
            for step in chain_steps
        }
        inputs = {step: step_inputs(session, step, [i for i in ids if step in chains[i][0]]) for step in chain_steps}
        done: dict[tuple[int, str], int] = {}  # (observation, signature) -> the newest done reduction
        for begin in range(0, len(ids), IN_CHUNK):
            for observation_id, signature, reduction_id in session.execute(
                select(Reduction.observation_id, Reduction.signature, Reduction.id)
                .where(
                    Reduction.observation_id.in_(ids[begin : begin + IN_CHUNK]),
                    Reduction.step.in_(chain_steps),
                    Reduction.status == "done",
                    Reduction.signature.isnot(None),
                )
                .order_by(Reduction.id)
            ):
                done[(observation_id, signature)] = reduction_id
    for i in ids:
        chain, reason = chains[i]
        planned: list[StepPlan] = []
        earlier: str | None = None  # the first step of the chain that runs
        for step in chain:
            if earlier is not None:
                planned.append(StepPlan(step, f"after {earlier}"))
                continue
            found = inputs[step][i]
            if found is None:
                planned.append(StepPlan(step, "no input"))
                earlier = step  # the runner fails such a step and stops the chain
                continue
            version, fingerprint = fingerprints[step]
            reduction_id = done.get((i, signature_of(step, version, fingerprint, found)))
            if reduction_id is not None:
                planned.append(StepPlan(step, "up-to-date", reduction_id))
            else:
                planned.append(StepPlan(step, "run"))
                earlier = step
        plan.observations.append(ObservationPlan(i, labels.get(i, "?"), tuple(planned), reason))
    plan.seconds = time.perf_counter() - started
    return plan


def _chain_order(step: str) -> int:
    return STEP_ORDER.index("postprocess" if step == SPECTRAL_STEP else step)
