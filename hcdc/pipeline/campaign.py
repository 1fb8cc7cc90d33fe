"""Campaigns: plan the work from the catalog, run it on dask, compare with the previous campaign.

A campaign is a named, versioned release of the catalog's reductions
(``campaigns`` + ``campaign_reductions``). ``reprocess`` selects observations,
hands one chain task per observation to an executor (``serial``: in this
process; ``local``: a dask ``LocalCluster``; ``slurm``: a
``dask_jobqueue.SLURMCluster`` configured from the validated settings), shows
done/failed/remaining, and returns a :class:`CampaignReport`. Up-to-date
steps are not run again, so re-running a campaign does nothing and an
interrupted one resumes where it stopped.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import yaml
from sqlalchemy import select

from ..catalog.db import Catalog
from ..catalog.models import (
    Campaign,
    CampaignReduction,
    Detection,
    DetectionLimit,
    Observation,
    Reduction,
    Target,
)
from ..settings import Settings
from .runner import (
    ALL_STEPS,
    IN_CHUNK,
    POSTPROCESS_STEPS,
    SPECTRAL_STEP,
    STEP_ORDER,
    ChainResult,
    ChainTask,
    release_warm_kernel,
    run_chain,
)

log = logging.getLogger(__name__)

DEFAULTS = Path(__file__).resolve().parent / "campaign_defaults.yaml"
EXECUTORS = ("serial", "local", "slurm")


class QueryError(ValueError):
    """An ``--observations`` query that cannot be understood."""


def load_parameters(path: Path | None = None) -> dict[str, dict]:
    """Campaign parameters: the defaults, overridden per step by ``path`` (YAML)."""
    from .steps import parse_parameters, step_specs

    values = yaml.safe_load(DEFAULTS.read_text()) or {}
    if path is not None:
        override = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(override) - set(ALL_STEPS)
        if unknown:
            raise ValueError(f"{path}: unknown step(s) {', '.join(sorted(unknown))}; steps: {', '.join(ALL_STEPS)}")
        for step, params in override.items():
            values[step] = _merge(values.get(step) or {}, params or {})
    specs = step_specs()
    # validate now (typos fail here, not in a worker an hour later)
    return {step: parse_parameters(specs[step], values.get(step) or {}).to_dict() for step in ALL_STEPS}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


_TERM = re.compile(r"^\s*(id|instrument|target|night|filter|programme|origin)\s*(=|>=|<=|>|<|!=)\s*(.+?)\s*$")


def select_observations(session, query: str | None) -> list[int]:
    """Observation ids matching a query such as ``instrument=SPHERE-IRDIS; night>=2026-06-01; id=3,4``.

    Terms are separated by ``;`` (or ``and``); fields: id, instrument, target
    (name or alias), night, filter, programme, origin. Without a query: every
    observation.
    """
    from ..catalog.models import Programme, TargetAlias
    from ..catalog.registry import normalize_name

    statement = select(Observation.id).order_by(Observation.id)
    for term in re.split(r";|\band\b", query or ""):
        if not term.strip():
            continue
        match = _TERM.match(term)
        if match is None:
            raise QueryError(
                f"cannot read {term.strip()!r}: use field=value with fields id, instrument, target, "
                "night, filter, programme, origin (e.g. 'instrument=SPHERE-IRDIS; night>=2026-06-01')"
            )
        name, op, value = match.groups()
        value = value.strip("'\"")
        if name == "id":
            ids = [int(v) for v in value.split(",")]
            statement = statement.where(Observation.id.in_(ids) if op == "=" else ~Observation.id.in_(ids))
            continue
        if name == "target":
            aliases = select(TargetAlias.target_id).where(TargetAlias.normalized == normalize_name(value))
            statement = statement.where(Observation.target_id.in_(aliases))
            continue
        if name == "programme":
            statement = statement.where(
                Observation.programme_id.in_(select(Programme.id).where(Programme.prog_id == value))
            )
            continue
        column = getattr(Observation, name)
        if name == "night":
            try:
                value = date.fromisoformat(value)
            except ValueError as exc:
                raise QueryError(f"night {value!r} is not a date (YYYY-MM-DD)") from exc
        comparison = {
            "=": column == value,
            "!=": column != value,
            ">=": column >= value,
            "<=": column <= value,
            ">": column > value,
            "<": column < value,
        }[op]
        statement = statement.where(comparison)
    return list(session.scalars(statement))


def open_campaign(catalog: Catalog, name: str, new_version: bool = False) -> Campaign:
    """The latest version of campaign ``name`` (created if needed; a new version on request)."""
    with catalog.session() as session:
        latest = session.scalar(
            select(Campaign).where(Campaign.name == name).order_by(Campaign.version.desc()).limit(1)
        )
        if latest is None or new_version:
            latest = Campaign(name=name, version=1 if latest is None else latest.version + 1, status="planned")
            session.add(latest)
            session.flush()
        session.expunge(latest)
        return latest


@dataclass
class CampaignReport:
    campaign: str
    version: int
    campaign_id: int
    observations: int
    results: list[ChainResult] = field(default_factory=list)
    seconds: float = 0.0
    executor: str = "serial"
    #: from the start to the first task handed to the executor (selection, chains, order)
    planning_seconds: float = 0.0
    #: what linking the detections into sources did after the campaign (None: not run)
    sources: Any = None
    #: why linking failed (the campaign's reductions stand; ``hcdc sources link`` retries)
    sources_error: str | None = None

    @property
    def counts(self) -> Counter:
        return Counter(step.status for r in self.results for step in r.steps)

    @property
    def steps_run(self) -> int:
        return sum(r.ran for r in self.results)

    @property
    def failures(self) -> list[tuple[int, str, str]]:
        return [
            (r.observation_id, s.step, s.error or "") for r in self.results for s in r.steps if s.status == "failed"
        ]


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="campaign", unit="obs", disable=not enabled or None, dynamic_ncols=True)


def reprocess(
    catalog: Catalog,
    settings: Settings,
    *,
    campaign: str = "systematic",
    query: str | None = None,
    executor: str = "serial",
    parameters: dict[str, dict] | None = None,
    retries: int | None = None,
    new_version: bool = False,
    steps: Iterable[str] = STEP_ORDER,
    progress: bool = False,
    cluster: Any = None,
    announce: Callable[[str], None] | None = None,
) -> CampaignReport:
    """Plan and run a campaign (see the module docstring).

    ``progress`` shows a bar (a terminal); ``announce`` receives one line per finished observation
    (its steps, their outcome and time, how many are left and the estimated time to go), written
    above the bar when there is one. ``cluster`` lets a caller pass an already running dask cluster
    (tests, notebooks).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}")
    parameters = parameters or load_parameters()
    steps = tuple(s for s in STEP_ORDER if s in set(steps))
    row = open_campaign(catalog, campaign, new_version)
    planning_started = time.perf_counter()
    with catalog.session() as session:
        ids = select_observations(session, query)
        session.get(Campaign, row.id).status = "running"
        observations, labels = load_observations(session, ids)
        plans = {i: observation_steps(observations[i], steps) for i in ids}
    # RDI/ARDI draw their libraries from other observations' calibrated cubes: all the pre-processing first
    phases = [steps]
    if {"preprocess", "postprocess"} <= set(steps) and _uses_references(parameters):
        phases = [tuple(s for s in steps if s != "postprocess"), ("postprocess",)]

    def phase_tasks(phase: tuple[str, ...], exclude: set[int]) -> list[ChainTask]:
        return [
            ChainTask(
                observation_id=i,
                campaign_id=row.id,
                steps=tuple(s for s in plans[i][0] if _phase_of(s) in phase),
                parameters=parameters,
                catalog_url=catalog.url,
                data_dir=str(settings.data_dir),
                retries=settings.pipeline_retries if retries is None else retries,
            )
            for i in ids
            if i not in exclude and any(_phase_of(s) in phase for s in plans[i][0])
        ]

    tasks = phase_tasks(phases[0], set())
    with catalog.session() as session:  # the longest first: a long observation left to the end makes the tail
        tasks = longest_first(
            tasks, expected_seconds(session, [t.observation_id for t in tasks], (*steps, SPECTRAL_STEP))
        )
    report = CampaignReport(
        campaign=campaign,
        version=row.version,
        campaign_id=row.id,
        observations=len(ids),
        executor=executor,
        planning_seconds=time.perf_counter() - planning_started,
    )
    from .runner import StepOutcome

    for i in ids:  # what cannot be processed is said, not silently dropped
        if not plans[i][0]:
            result = ChainResult(i)
            result.steps.append(StepOutcome(i, ",".join(steps), "skipped", None, plans[i][1]))
            report.results.append(result)
    partly = {
        i: (tuple(s for s in steps if s not in plans[i][0]), plans[i][1]) for i in ids if plans[i][0] and plans[i][1]
    }
    started = time.perf_counter()
    total = sum(1 for i in ids if plans[i][0])
    bar = _progress(len(ids), progress)
    bar.update(len(ids) - total)
    merged: dict[int, ChainResult] = {}
    try:
        for number, phase in enumerate(phases):
            if number:  # the next phase: observations whose earlier steps failed are not taken further
                failed = {i for i, r in merged.items() if r.failed}
                tasks = phase_tasks(phase, failed)
            last_phase = number == len(phases) - 1
            for finished, result in enumerate(_execute(tasks, executor, settings, cluster), start=1):
                combined = merged.setdefault(result.observation_id, ChainResult(result.observation_id))
                combined.steps.extend(result.steps)
                if not last_phase and not result.failed:
                    continue
                if result.observation_id in partly:
                    left, reason = partly[result.observation_id]
                    combined.steps.append(StepOutcome(result.observation_id, ",".join(left), "skipped", None, reason))
                counts = report.counts
                bar.set_postfix(
                    done=counts["done"],
                    uptodate=counts["up-to-date"],
                    failed=counts["failed"],
                    last=f"obs {result.observation_id}",
                    refresh=False,
                )
                bar.update()
                if announce is not None:  # one result per observation, in the order they finish
                    line = finished_line(
                        combined,
                        labels.get(result.observation_id, ""),
                        sum(1 for r in merged.values() if last_phase or r.failed),
                        total,
                        time.perf_counter() - started,
                    )
                    (bar.write if progress else announce)(line)
    finally:
        bar.close()
    report.results.extend(merged.values())
    report.seconds = time.perf_counter() - started
    report.results.sort(key=lambda r: r.observation_id)
    with catalog.session() as session:
        campaign_row = session.get(Campaign, row.id)
        campaign_row.status = "failed" if report.failures else "done"
        campaign_row.finished_at = datetime.now(timezone.utc)
    if ids and any(step in POSTPROCESS_STEPS for step in steps):  # IRDIS, NACO and IFS detections alike
        _link_sources(catalog, settings, ids, report, announce)
    return report


def _link_sources(
    catalog: Catalog, settings: Settings, observation_ids: list[int], report: CampaignReport, announce
) -> None:
    """Link the new detections of the campaign's targets into sources across epochs (:mod:`hcdc.sources`)."""
    from ..known_companions import load_known_companions
    from ..sources import link_sources

    try:
        known = load_known_companions(settings)
        with catalog.session() as session:
            target_ids = set(
                session.scalars(select(Observation.target_id).where(Observation.id.in_(observation_ids)))
            ) - {None}
            summary = None
            for target_id in sorted(target_ids):
                one = link_sources(session, session.get(Target, target_id).name, known=known)
                if summary is None:
                    summary = one
                else:
                    for name in ("targets", "sources", "linked", "new_sources", "removed_sources"):
                        setattr(summary, name, getattr(summary, name) + getattr(one, name))
                    summary.skipped.update(one.skipped)
        report.sources = summary
        if announce is not None and summary is not None:
            announce(
                f"sources: {summary.sources} source(s) of {summary.targets} target(s) from {summary.linked} epoch(s) "
                f"({summary.new_sources} new); see hcdc catalog sources"
            )
    except Exception as exc:  # the reductions are done and kept: linking can be re-run alone
        log.exception("linking sources after campaign %s failed", report.campaign_id)
        report.sources_error = f"{type(exc).__name__}: {exc}"
        if announce is not None:
            announce(f"sources: linking failed ({report.sources_error}); run hcdc sources link")


def _phase_of(step: str) -> str:
    """The campaign step a per-observation step stands for (the spectral post-processing is a post-processing)."""
    return "postprocess" if step == SPECTRAL_STEP else step


def _uses_references(parameters: dict[str, dict]) -> bool:
    """Whether the campaign's post-processing runs an algorithm with a reference library (RDI, ARDI)."""
    from reduction.postproc.pipeline import REFERENCE_ALGORITHMS

    post = parameters.get("postprocess") or {}
    algorithms = {(post.get("subtraction") or {}).get("algorithm", "pca")}
    algorithms |= {a.strip() for a in str(post.get("confirm_with") or "").split(",") if a.strip()}
    return bool(algorithms & set(REFERENCE_ALGORITHMS))


def expected_seconds(session, observation_ids: list[int], steps: Iterable[str]) -> dict[int, float]:
    """Seconds each observation's steps took last time they were done (observations never done: absent)."""
    steps = tuple(steps)
    rows = session.execute(
        select(Reduction.observation_id, Reduction.step, Reduction.started_at, Reduction.finished_at)
        .where(
            Reduction.observation_id.in_(observation_ids),
            Reduction.step.in_(steps),
            Reduction.status == "done",
            Reduction.started_at.isnot(None),
            Reduction.finished_at.isnot(None),
        )
        .order_by(Reduction.id)
    ).all()
    latest: dict[tuple[int, str], float] = {}
    for observation_id, step, started, finished in rows:  # the newest of each (observation, step) wins
        latest[(observation_id, step)] = max((finished - started).total_seconds(), 0.0)
    costs: dict[int, float] = {}
    for (observation_id, _step), seconds in latest.items():
        costs[observation_id] = costs.get(observation_id, 0.0) + seconds
    return costs


def longest_first(tasks: list[ChainTask], costs: dict[int, float]) -> list[ChainTask]:
    """Tasks by expected duration, longest first (longest-processing-time scheduling on the workers).

    An observation with no history is expected to take the median of the others (its place is
    then in the middle); with no history at all the order is kept.
    """
    known = sorted(costs[t.observation_id] for t in tasks if t.observation_id in costs)
    guess = known[len(known) // 2] if known else 0.0
    return sorted(tasks, key=lambda t: -costs.get(t.observation_id, guess))


def load_observations(session, observation_ids: list[int]) -> tuple[dict[int, Observation], dict[int, str]]:
    """The observations, and their labels (``HD 95086 2026-06-01 SPHERE-IRDIS``), in a query per 5000."""
    observations: dict[int, Observation] = {}
    labels: dict[int, str] = {}
    for begin in range(0, len(observation_ids), IN_CHUNK):
        for observation, target_name in session.execute(
            select(Observation, Target.name)
            .outerjoin(Target, Target.id == Observation.target_id)
            .where(Observation.id.in_(observation_ids[begin : begin + IN_CHUNK]))
        ):
            observations[observation.id] = observation
            labels[observation.id] = f"{target_name or '?'} {observation.night} {observation.instrument}"
    return observations, labels


def finished_line(result, label: str, finished: int, total: int, elapsed: float) -> str:
    """``obs 12 (HD 95086 2026-06-01 SPHERE-IRDIS): preprocess done 41 s, postprocess done 63 s
    [5/12, 3m10s elapsed, ~4m26s to go]``: one observation's chain, as it finishes."""
    steps = ", ".join(
        f"{s.step} {s.status}"
        + (f" {s.seconds:.0f} s" if s.status in ("done", "failed") else "")
        + (f" ({(s.error or '?').splitlines()[0][:100]})" if s.status == "failed" else "")
        for s in result.steps
    )
    left = total - finished
    eta = f", ~{format_duration(elapsed / finished * left)} to go" if finished and left else ""
    return (
        f"obs {result.observation_id} ({label}): {steps} [{finished}/{total}, {format_duration(elapsed)} elapsed{eta}]"
    )


def format_duration(seconds: float) -> str:
    """``2m09s`` (``45s`` under a minute): the campaign's progress lines and the demo's total."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def observation_steps(observation: Observation, steps: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """The steps that apply to an observation, or none with the reason."""
    if observation.origin == "external":
        # a registered calibrated cube: post-processing only
        return tuple(s for s in steps if s == "postprocess"), None if "postprocess" in steps else "external cube"
    if observation.instrument not in ("SPHERE-IRDIS", "SPHERE-IFS"):
        return (), f"pre-processing of {observation.instrument} raw frames is not implemented (SPHERE only)"
    if observation.n_science_files == 0:
        return (), "no science frames"
    if observation.instrument == "SPHERE-IFS":
        # 39 channels through the per-band chain (PCA, NEGFC, limits) would cost ~39 IRDIS bands and vet
        # nothing across neighbouring channels: the spectral chain (ASDI, spectra, limits per channel) instead
        return tuple(SPECTRAL_STEP if s == "postprocess" else s for s in steps), None
    return steps, None


def _execute(tasks: list[ChainTask], executor: str, settings: Settings, cluster: Any):
    if executor == "serial" or not tasks:
        try:
            for task in tasks:
                yield run_chain(task)
        finally:  # the kernel belongs to the calling thread, which may end or move on to other work
            release_warm_kernel()
        return
    from distributed import Client, as_completed

    own = cluster is None
    if own:
        cluster = make_cluster(executor, settings)
    try:
        with Client(cluster) as client:
            futures = [
                client.submit(
                    run_chain,
                    task,
                    key=f"obs{task.observation_id}-{task.campaign_id}-{time.time_ns()}",
                    pure=False,
                    priority=len(tasks) - index,  # in the planned order (longest first)
                )
                for index, task in enumerate(tasks)
            ]
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # a worker died: the observation is failed, the campaign goes on
                    task = tasks[futures.index(future)]
                    result = ChainResult(task.observation_id)
                    from .runner import StepOutcome

                    result.steps.append(
                        StepOutcome(
                            task.observation_id, "?", "failed", None, f"worker lost: {type(exc).__name__}: {exc}"
                        )
                    )
                    yield result
    finally:
        if own:
            cluster.close()


def make_cluster(executor: str, settings: Settings):
    """A dask cluster for ``local`` or ``slurm``, from the validated settings.

    Every campaign cluster speaks TLS with credentials made for it alone
    (:func:`campaign_security`): scheduler, workers and nannies accept only
    peers holding the campaign's certificate, so no other account on the
    machine (a PI's kernel, a job on a shared SLURM node) can connect to their
    TCP ports and run code as the pipeline. The dask dashboard is off, and so are
    the HTTP pages dask serves without it (scheduler JSON, workers' logs, its proxy
    to the workers): their HTTP servers have no routes (:data:`NO_HTTP_ROUTES`).
    """
    import logging

    import dask

    for name in ("distributed", "dask_jobqueue"):  # their INFO chatter would drown the progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    security = campaign_security()
    work = private_folder(settings.data_dir / "work" / "dask")
    if executor == "local":
        from distributed import LocalCluster

        with dask.config.set(NO_HTTP_ROUTES):  # nannies hand this configuration to their workers
            return LocalCluster(
                n_workers=settings.local_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                protocol="tls://",
                security=security,
                dashboard_address=None,
                local_directory=str(work),
            )
    if executor == "slurm":
        import sys

        from dask_jobqueue import SLURMCluster

        logs = private_folder(settings.data_dir / "work" / "slurm-logs")
        # the workers read the campaign's credentials from files on the shared file system: written 0600
        # (NamedTemporaryFile) into a 0700 folder of the pipeline account, removed with the cluster
        credentials = private_folder(settings.data_dir / "work" / "dask-credentials")
        prologue = [f"export DASK_{key.upper().replace('.', '__').replace('-', '_')}='[]'" for key in NO_HTTP_ROUTES]
        with dask.config.set(NO_HTTP_ROUTES):
            cluster = SLURMCluster(
                queue=settings.slurm_queue,
                cores=settings.slurm_cores,
                processes=1,
                memory=settings.slurm_memory,
                walltime=settings.slurm_walltime,
                job_extra_directives=list(settings.slurm_job_extra_directives),
                python=sys.executable,
                log_directory=str(logs),
                local_directory=str(work),
                protocol="tls://",
                security=security,
                shared_temp_directory=str(credentials),
                scheduler_options={"dashboard_address": None},
                job_script_prologue=prologue,
                worker_extra_args=["--no-dashboard"],
            )
        cluster.scale(jobs=settings.slurm_jobs)
        return cluster
    raise ValueError(f"no cluster for executor {executor!r}")


#: dask's HTTP servers (scheduler and workers) serve nothing: no dashboard, no JSON, no logs, no proxy
NO_HTTP_ROUTES = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}


def campaign_security():
    """TLS credentials of one campaign cluster: a fresh CA and key pair, mutual authentication required.

    ``distributed.security.Security.temporary()`` keeps them in memory; peers must present a certificate of
    this CA (distributed verifies both sides), and unencrypted ``tcp://`` connections are refused.
    """
    from distributed.security import Security

    return Security.temporary()


def private_folder(path: Path) -> Path:
    """``path`` created readable by its owner only, and so is every folder created on the way to it."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)  # mkdir's mode is reduced by the umask, never widened: say it exactly
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


# --- comparing campaigns ------------------------------------------------------------------------


def campaign_reductions(session, campaign_id: int, step: str) -> dict[int, Reduction]:
    """observation id -> the campaign's done reduction of ``step``."""
    rows = session.scalars(
        select(Reduction)
        .join(CampaignReduction, CampaignReduction.reduction_id == Reduction.id)
        .where(CampaignReduction.campaign_id == campaign_id, Reduction.step == step, Reduction.status == "done")
    )
    return {r.observation_id: r for r in rows}


def contrast_at(session, reduction_id: int, separation_arcsec: float) -> float | None:
    """Best (deepest) 5-sigma contrast over wavelengths and algorithms at ``separation_arcsec`` (log-interpolated)."""
    best = None
    for limit in session.scalars(select(DetectionLimit).where(DetectionLimit.reduction_id == reduction_id)):
        points = [(p.sep_arcsec, p.contrast) for p in limit.points if p.contrast and p.contrast > 0]
        if len(points) < 2:
            continue
        seps, values = np.array(points).T
        if not seps.min() <= separation_arcsec <= seps.max():
            continue
        value = float(10 ** np.interp(separation_arcsec, seps, np.log10(values)))
        best = value if best is None else min(best, value)
    return best


@dataclass
class CampaignComparison:
    current: str
    previous: str | None
    rows: list[dict[str, Any]]

    def render(self) -> str:
        if self.previous is None:
            return f"{self.current}: first campaign of its name, nothing to compare with"
        changed = [r for r in self.rows if r["changed"]]
        lines = [f"{self.current} vs {self.previous}: {len(changed)} of {len(self.rows)} observation(s) changed"]
        for row in changed:
            gain = ", ".join(
                f'{sep}": {row[f"contrast_{sep}_prev"] or "-"} -> {row[f"contrast_{sep}"] or "-"}'
                for sep in ("0.25", "0.5")
            )
            lines.append(
                f"  obs {row['observation']} ({row['target']}): detections +{row['appeared']} "
                f"-{row['disappeared']}; 5-sigma contrast {gain}"
            )
        return "\n".join(lines)


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:.2e}"


def compare_campaigns(session, campaign_id: int, previous_id: int | None) -> CampaignComparison:
    """Observations whose post-processing changed, detections appeared/disappeared, contrast at 0.25"/0.5"."""
    current = session.get(Campaign, campaign_id)
    previous = session.get(Campaign, previous_id) if previous_id else None
    now = campaign_reductions(session, campaign_id, "postprocess")
    before = campaign_reductions(session, previous_id, "postprocess") if previous_id else {}
    rows = []
    for observation_id in sorted(set(now) | set(before)):
        a, b = now.get(observation_id), before.get(observation_id)
        observation = session.get(Observation, observation_id)
        target = session.get(Target, observation.target_id) if observation and observation.target_id else None
        new = _detections(session, a.id) if a else []
        old = _detections(session, b.id) if b else []
        appeared = sum(1 for d in new if not any(_same_source(d, o) for o in old))
        disappeared = sum(1 for o in old if not any(_same_source(o, d) for d in new))
        row = {
            "observation": observation_id,
            "target": target.name if target else "?",
            "changed": (a.id if a else None) != (b.id if b else None),
            "appeared": appeared,
            "disappeared": disappeared,
        }
        for sep in (0.25, 0.5):
            row[f"contrast_{sep}"] = _fmt(contrast_at(session, a.id, sep)) if a else None
            row[f"contrast_{sep}_prev"] = _fmt(contrast_at(session, b.id, sep)) if b else None
        rows.append(row)
    return CampaignComparison(
        f"{current.name} v{current.version}", f"{previous.name} v{previous.version}" if previous else None, rows
    )


def _detections(session, reduction_id: int) -> list[Detection]:
    return list(session.scalars(select(Detection).where(Detection.reduction_id == reduction_id)))


def _same_source(a: Detection, b: Detection, tolerance_arcsec: float = 0.02) -> bool:
    ax, ay = a.sep_arcsec * np.sin(np.deg2rad(a.pa_deg)), a.sep_arcsec * np.cos(np.deg2rad(a.pa_deg))
    bx, by = b.sep_arcsec * np.sin(np.deg2rad(b.pa_deg)), b.sep_arcsec * np.cos(np.deg2rad(b.pa_deg))
    return a.wavelength_um == b.wavelength_um and np.hypot(ax - bx, ay - by) <= tolerance_arcsec


def previous_campaign_id(session, campaign_id: int) -> int | None:
    """The previous version of the same campaign, else the most recent other finished campaign."""
    current = session.get(Campaign, campaign_id)
    same = session.scalar(
        select(Campaign.id)
        .where(Campaign.name == current.name, Campaign.version < current.version)
        .order_by(Campaign.version.desc())
        .limit(1)
    )
    if same is not None:
        return same
    return session.scalar(
        select(Campaign.id)
        .where(Campaign.id != campaign_id, Campaign.finished_at.isnot(None))
        .order_by(Campaign.finished_at.desc())
        .limit(1)
    )
