"""Executing one observation's steps as papermill notebooks, with provenance and retries.

A task is the chain of steps of one observation (pre-processing then
post-processing), run in one dask worker process:

* a step whose signature (step, version, parameters, input hashes) matches a
  done reduction of the same observation is up to date: that reduction joins
  the campaign, nothing runs;
* otherwise stale rows of the step in this campaign (left by a killed or failed
  run) are deleted first (no duplicate rows, ever), a ``reductions`` row is
  created (status ``running``, signature, papermill run id, notebook path), and
  the step's notebook is executed by papermill with the ``hcdc`` kernel. The
  executed notebook is kept and rendered to HTML; a failure is retried
  ``retries`` times, then recorded with its error, and the chain stops there
  for this observation only.

A worker keeps one warm ``hcdc`` kernel and runs notebook after notebook in it
(:class:`WarmKernel`): starting a kernel and importing the reduction stack
costs seconds, more than a small step's science. Before each notebook the
kernel's namespace is reset (``InteractiveShell.reset``, so every notebook
starts from its parameters cell, as in a fresh kernel, with the modules
already imported); a failure, another catalog or data directory, or
``KERNEL_REUSE`` notebooks replace the kernel by a fresh one.

Notebooks never start clusters; this module never imports dask.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hcdc.outcome import StepOutcome
from hcdc.reports import product_folder, reduction_file, reports_folder
from reduction.fitsio_products import named_write

log = logging.getLogger(__name__)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "pipeline"
STEP_ORDER = ("preprocess", "postprocess")
#: the post-processing of spectral cubes (SPHERE IFS): it takes the place of ``postprocess`` for them
SPECTRAL_STEP = "postprocess-spectral"
#: every step of :func:`hcdc.pipeline.steps.step_specs`, with the campaign parameters of each
ALL_STEPS = (*STEP_ORDER, SPECTRAL_STEP)
#: the steps whose reductions hold detections and detection limits
POSTPROCESS_STEPS = ("postprocess", SPECTRAL_STEP)
#: Notebooks one kernel runs before it is replaced: bounds what a long campaign can accumulate
#: in a kernel (memory, caches) while the start-up cost is paid once per this many steps.
KERNEL_REUSE = 25
ENGINE = "hcdc-warm-kernel"


#: Run in the kernel after each notebook: forget the notebook's names, then move what survives
#: (modules, caches) out of the garbage collector's view, so that the collections triggered
#: during the next step no longer walk the whole imported stack (tens of ms each).
_RESET = (
    "get_ipython().reset(new_session=True)\nimport gc as _gc\nimport matplotlib.pyplot as _plt\n"
    "_plt.close('all')\n_gc.collect()\n_gc.freeze()\ndel _gc, _plt"
)


class WarmKernel:
    """The worker process's kernel (and its client), kept between notebooks (see the module docstring).

    An ``AsyncKernelManager`` and its ``AsyncKernelClient``, as nbclient expects them: every call runs
    on this thread's one event loop. A synchronous ``KernelManager`` handed to nbclient's asynchronous
    code made jupyter_core run each of its calls on a background thread's loop (one more thread per
    calling thread, ZeroMQ sockets used from two loops); the test process, which runs campaigns in
    several threads, then died in the garbage collector now and then.
    """

    def __init__(self) -> None:
        self.km = None
        self.kc = None  #: the connected client, kept too: connecting one costs ~0.2 s
        self._reset_id: str | None = None
        self.key: tuple | None = None
        self.runs = 0
        atexit.register(self.shutdown)

    def prepare(self, kernel_name: str, key: tuple, env: dict[str, str] | None = None) -> "WarmKernel":
        """Ready for the next notebook: the warm kernel, reset, or a new one started with ``env`` added.

        The environment is given to the kernel explicitly, not through this process's
        ``os.environ``, which other worker threads may be changing.
        """
        from jupyter_client import AsyncKernelManager
        from jupyter_core.utils import run_sync

        if self.km is not None and (self.key != key or self.runs >= KERNEL_REUSE or not run_sync(self.km.is_alive)()):
            self.shutdown()
        if self.km is not None and not self._reset():
            self.shutdown()
        if self.km is None:
            self.km = AsyncKernelManager(kernel_name=kernel_name)
            run_sync(self.km.start_kernel)(env={**os.environ, **(env or {})})
            self.key, self.runs = key, 0
        self.runs += 1
        return self

    def request_reset(self) -> None:
        """Ask the kernel to clear the finished notebook's namespace (modules stay imported).

        Sent as soon as a notebook ends, without waiting: the kernel resets while the
        runner writes the report and the catalog rows; :meth:`prepare` collects the reply.
        """
        self._reset_id = None
        if self.kc is not None:
            try:
                self._reset_id = self.kc.execute(_RESET, silent=True, store_history=False)
            except Exception:
                self._reset_id = None

    def _reset(self) -> bool:
        """True when the requested reset was done (requested now if it was not)."""
        if self.kc is None:
            return False
        if self._reset_id is None:
            self.request_reset()
            if self._reset_id is None:  # the request could not even be sent
                return False
        from jupyter_core.utils import run_sync

        try:
            while True:
                reply = run_sync(self.kc.get_shell_msg)(timeout=60)
                if reply["parent_header"].get("msg_id") == self._reset_id:
                    break
        except Exception:  # no answer: the kernel is replaced
            return False
        finally:
            self._reset_id = None
        return reply["content"]["status"] == "ok"

    def shutdown(self) -> None:
        """Stop the kernel (after a failure, at exit)."""
        km, kc, self.km, self.kc = self.km, self.kc, None, None
        if kc is not None:
            try:
                kc.stop_channels()
            except Exception:
                pass
        if km is not None:
            from jupyter_core.utils import run_sync

            try:
                if km.has_kernel:
                    run_sync(km.shutdown_kernel)(now=True)
            except Exception:  # already dead: nothing to stop
                pass


#: One warm kernel per worker *thread*: a SLURM job's worker runs ``slurm_cores`` tasks at once.
_WARM = threading.local()


def warm_kernel() -> WarmKernel:
    kernel = getattr(_WARM, "kernel", None)
    if kernel is None:
        kernel = _WARM.kernel = WarmKernel()
    return kernel


def release_warm_kernel() -> None:
    """Stop this thread's warm kernel and forget it (a serial campaign's end).

    A dask worker keeps its kernel until the worker exits. A serial campaign runs in
    the caller's thread, which may be a short-lived thread of a long process (a test
    session, a service): its kernel, the client's heartbeat thread and their ZeroMQ
    sockets would otherwise outlive the thread and be finalised later from another
    thread, which is what crashed the test process (a segmentation fault in the
    garbage collector, with the channel threads of such clients alive).
    """
    kernel = getattr(_WARM, "kernel", None)
    if kernel is None:
        return
    del _WARM.kernel
    kernel.shutdown()
    atexit.unregister(kernel.shutdown)


def _register_engine() -> None:
    """A papermill engine that runs the notebook in the worker's :class:`WarmKernel`."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import remove_args

    if ENGINE in papermill_engines._engines:
        return

    class WarmKernelEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man,
            kernel_name,
            log_output=False,
            stdout_file=None,
            stderr_file=None,
            start_timeout=60,
            execution_timeout=None,
            **kwargs,
        ):
            warm: WarmKernel = kwargs.pop("warm_kernel")
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            client = PapermillNotebookClient(
                nb_man,
                km=warm.km,
                kernel_name=kernel_name,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                log=papermill_logger(),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            )
            client.kc = warm.kc  # None the first time: nbclient starts the kernel and connects
            try:
                notebook = client.execute()
            finally:
                warm.kc = client.kc  # not ours to stop: the worker keeps kernel and client
            warm.request_reset()
            return notebook

    papermill_engines.register(ENGINE, WarmKernelEngine)


def papermill_logger():
    from papermill.log import logger

    return logger


@dataclass(frozen=True)
class ChainTask:
    """Everything a worker needs (plain data: it crosses process boundaries)."""

    observation_id: int
    campaign_id: int | None  #: None: a manual (re-)run outside any campaign
    steps: tuple[str, ...]
    parameters: dict[str, dict]
    catalog_url: str
    data_dir: str
    retries: int = 1
    kernel: str = "hcdc"
    force: bool = False  #: run even when an identical done reduction exists (hcdc rerun)


@dataclass
class ChainResult:
    observation_id: int
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)

    @property
    def ran(self) -> int:
        return sum(1 for s in self.steps if s.status in ("done", "failed"))

    def to_dict(self) -> dict[str, Any]:
        return {"observation_id": self.observation_id, "steps": [asdict(s) for s in self.steps]}


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def step_signature(session, step: str, version: str, params_sha256: str, observation_id: int) -> str | None:
    """The signature of a step on an observation, or None when its inputs do not exist yet."""
    inputs = step_inputs(session, step, [observation_id])[observation_id]
    return None if inputs is None else signature_of(step, version, params_sha256, inputs)


def signature_of(step: str, version: str, params_sha256: str, inputs: list[str]) -> str:
    """A step's signature: its name, version, parameters' fingerprint and input hashes."""
    return _sha({"step": step, "version": version, "parameters": params_sha256, "inputs": inputs})


#: Observations per ``IN (...)`` list: below every database's limit on bound parameters.
IN_CHUNK = 5000


def step_inputs(session, step: str, observation_ids: list[int]) -> dict[int, list[str] | None]:
    """The input hashes of ``step`` for each observation (None: its input does not exist yet).

    Several observations in a few queries, so that planning a campaign over the whole
    catalog costs a handful of queries rather than a handful per observation.

    * ``preprocess``: the accepted science frames, then the accepted calibration frames
      associated with the observation (each sorted, duplicates once);
    * a post-processing step: the cube, angles and PSF products of the newest done
      source reduction (pre-processing or registration of an external cube), and the
      observation's origin.
    """
    from collections import defaultdict

    from hcdc.catalog.models import Observation, ObservationCalibration, Product, RawFile
    from hcdc.postprocessing import INPUT_KINDS, newest_source_reductions

    out: dict[int, list[str] | None] = {}
    for start in range(0, len(observation_ids), IN_CHUNK):
        ids = list(observation_ids[start : start + IN_CHUNK])
        if step == "preprocess":
            frames: dict[int, set[str]] = defaultdict(set)
            calibrations: dict[int, set[str]] = defaultdict(set)
            for observation_id, sha in session.execute(
                select(RawFile.observation_id, RawFile.sha256).where(
                    RawFile.observation_id.in_(ids), RawFile.status == "accepted"
                )
            ):
                frames[observation_id].add(sha)
            for observation_id, sha in session.execute(
                select(ObservationCalibration.observation_id, RawFile.sha256)
                .join(RawFile, ObservationCalibration.raw_file_id == RawFile.id)
                .where(ObservationCalibration.observation_id.in_(ids), RawFile.status == "accepted")
            ):
                calibrations[observation_id].add(sha)
            for i in ids:
                out[i] = sorted(frames[i]) + ["|"] + sorted(calibrations[i])
            continue
        origins = dict(session.execute(select(Observation.id, Observation.origin).where(Observation.id.in_(ids))).all())
        source = newest_source_reductions(session, ids)
        products: dict[int, dict[str, str]] = defaultdict(dict)
        reductions = list(source.values())
        for begin in range(0, len(reductions), IN_CHUNK):
            for reduction_id, kind, sha in session.execute(
                select(Product.reduction_id, Product.kind, Product.sha256)
                .where(Product.reduction_id.in_(reductions[begin : begin + IN_CHUNK]), Product.kind.in_(INPUT_KINDS))
                .order_by(Product.id)  # the newest of a kind wins, as in postprocessing.input_products
            ):
                products[reduction_id][kind] = sha
        for i in ids:
            found = products.get(source.get(i), {})
            if i not in source or set(found) != set(INPUT_KINDS):
                out[i] = None
                continue
            out[i] = [f"{kind}:{sha}" for kind, sha in sorted(found.items())] + [f"origin:{origins.get(i)}"]
    return out


def notebook_source(step: str, work: Path) -> Path:
    """The step's jupytext notebook as .ipynb (converted once per worker)."""
    import jupytext

    target = work / f"{step}.ipynb"
    source = NOTEBOOKS / f"{step}.py"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        notebook = jupytext.read(source)
        work.mkdir(parents=True, exist_ok=True)
        jupytext.write(notebook, target)
    return target


_EXPORTERS = threading.local()


def render_html(notebook: Path) -> Path | None:
    """The executed notebook as a self-contained HTML report (None if rendering fails)."""
    try:
        import nbformat
        from nbconvert import HTMLExporter

        # one exporter per thread: building it (templates, filters) costs 3x the rendering
        exporter = getattr(_EXPORTERS, "html", None)
        if exporter is None:
            exporter = _EXPORTERS.html = HTMLExporter()
        body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    except Exception:  # a report that cannot be rendered must not fail the step
        return None
    html = notebook.with_suffix(".html")
    with named_write(html):
        html.write_text(body)
    return html


def execute_notebook(
    notebook: Path,
    executed: Path,
    kernel_name: str,
    parameters: dict[str, Any],
    *,
    key: tuple = (),
    env: dict[str, str] | None = None,
) -> str | None:
    """Execute ``notebook`` with papermill in this thread's warm kernel; the error text, or None.

    ``key`` names what the kernel's environment depends on (catalog, data
    directory), ``env`` gives it (added to this process's environment when a
    kernel starts): another key gets another kernel. A failed notebook's kernel
    is replaced, so that a retry starts from a fresh one.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _register_engine()
    kernel = warm_kernel()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            kernel_name=kernel_name,
            parameters=parameters,
            progress_bar=False,
            log_output=False,
            report_mode=False,
            engine_name=ENGINE,
            warm_kernel=kernel.prepare(kernel_name, (kernel_name, *key), env),
        )
        return None
    except PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except OSError as exc:  # the executed notebook could not be written (a full disk): name it
        if exc.errno is not None and not exc.filename:
            error = f"OSError: [Errno {exc.errno}] {exc.strerror}: {executed}"
        else:  # a timeout (TimeoutError is an OSError without errno) or an error naming its file
            error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # kernel died, notebook unreadable...
        error = f"{type(exc).__name__}: {exc}"
    kernel.shutdown()
    return error


def _delete_stale(catalog, observation_id: int, step: str, campaign_id: int, data_dir: Path) -> None:
    """Remove rows (and product folders) of unfinished or failed runs of this step in this campaign."""
    from hcdc.catalog.models import Reduction

    with catalog.session() as session:
        stale = session.scalars(
            select(Reduction).where(
                Reduction.observation_id == observation_id,
                Reduction.step == step,
                Reduction.campaign_id == campaign_id,
                Reduction.status != "done",
            )
        ).all()
        for reduction in stale:
            folder = product_folder(data_dir, observation_id, step, reduction.id)
            shutil.rmtree(folder, ignore_errors=True)
            session.delete(reduction)


def _join_campaign(catalog, campaign_id: int | None, reduction_id: int) -> None:
    from hcdc.catalog.models import CampaignReduction

    if campaign_id is None:
        return
    with catalog.session() as session:
        if session.get(CampaignReduction, (campaign_id, reduction_id)) is None:
            session.add(CampaignReduction(campaign_id=campaign_id, reduction_id=reduction_id))


def run_chain(task: ChainTask) -> ChainResult:
    """Run (or skip, when up to date) the steps of one observation. Never raises."""
    from hcdc.catalog.db import Catalog

    os.environ["HCDC_CATALOG_URL"] = task.catalog_url
    os.environ["HCDC_DATA_DIR"] = task.data_dir
    catalog = Catalog(task.catalog_url, migrate=False)
    result = ChainResult(task.observation_id)
    current = None
    try:
        for step in task.steps:
            current = step
            outcome = _run_step(catalog, task, step)
            result.steps.append(outcome)
            if outcome.status == "failed":
                for later in task.steps[task.steps.index(step) + 1 :]:
                    result.steps.append(
                        StepOutcome(task.observation_id, later, "skipped", None, f"not run: {step} failed")
                    )
                break
    except Exception as exc:  # infrastructure failure: still a result, never a crash of the campaign
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        reduction_id = _fail_running(catalog, task, current, error)
        result.steps.append(StepOutcome(task.observation_id, current or "?", "failed", reduction_id, error))
    finally:
        catalog.dispose()
    return result


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds; naive datetimes (SQLite gives them back so) are taken as UTC."""
    if start is None or end is None:
        return None
    start, end = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (start, end))
    return (end - start).total_seconds()


def _fail_running(catalog, task: ChainTask, step: str | None, error: str) -> int | None:
    """Record the step's unfinished reduction as failed (its id), so that no row is left ``running``."""
    from hcdc.catalog.models import Reduction

    if step is None:
        return None
    try:
        with catalog.session() as session:
            row = session.scalars(
                select(Reduction)
                .where(
                    Reduction.observation_id == task.observation_id,
                    Reduction.step == step,
                    Reduction.campaign_id == task.campaign_id,
                    Reduction.status == "running",
                )
                .order_by(Reduction.id.desc())
            ).first()
            if row is None:
                return None
            row.status, row.error = "failed", error
            row.finished_at = datetime.now(timezone.utc)
            return row.id
    except Exception:  # the catalog itself is unreachable: the next run's _delete_stale cleans up
        log.exception("could not record the failure of %s for observation %s", step, task.observation_id)
        return None


def _run_step(catalog, task: ChainTask, step: str) -> StepOutcome:
    from hcdc.catalog.models import Reduction
    from hcdc.pipeline.steps import parse_parameters, step_specs
    from hcdc.processing import start_reduction

    spec = step_specs()[step]
    params = parse_parameters(spec, task.parameters.get(step, {}))
    data_dir = Path(task.data_dir)
    started = time.perf_counter()
    with catalog.session() as session:
        signature = step_signature(session, step, spec.version, params.fingerprint(), task.observation_id)
        if signature is None:
            return StepOutcome(
                task.observation_id, step, "failed", None, f"no input for {step}: the previous step has no done result"
            )
        # up to date = the same signature for this observation: two observations may have byte-identical
        # inputs (one cube registered twice) and each needs its own reduction, detections and limits
        done = session.scalar(
            select(Reduction.id)
            .where(
                Reduction.signature == signature,
                Reduction.observation_id == task.observation_id,
                Reduction.status == "done",
            )
            .order_by(Reduction.id.desc())
            .limit(1)
        )
    if done is not None and not task.force:
        _join_campaign(catalog, task.campaign_id, done)
        return StepOutcome(task.observation_id, step, "up-to-date", done)

    reports_folder(data_dir, task.campaign_id, task.observation_id).mkdir(parents=True, exist_ok=True)
    work = data_dir / "work" / "notebooks"
    error = None
    reduction_id = None
    for attempt in range(1, task.retries + 2):
        if task.campaign_id is not None:
            _delete_stale(catalog, task.observation_id, step, task.campaign_id, data_dir)
        run_id = uuid.uuid4().hex
        reduction_id = start_reduction(
            catalog,
            task.observation_id,
            step,
            spec.version,
            params.to_dict(),
            params.fingerprint(),
            campaign_id=task.campaign_id,
            signature=signature,
            papermill_run_id=run_id,
        )
        with catalog.session() as session:
            row = session.get(Reduction, reduction_id)
            executed, log_path = reduction_file(data_dir, row, "notebook"), reduction_file(data_dir, row, "log")
            row.notebook_path, row.log_path, row.attempts = str(executed), str(log_path), attempt
        t0 = time.perf_counter()
        error = execute_notebook(
            notebook_source(step, work),
            executed,
            task.kernel,
            {
                "observation_id": task.observation_id,
                "parameters": json.dumps(params.to_dict()),
                "reduction_id": reduction_id,
            },
            key=(task.catalog_url, task.data_dir),
            env={"HCDC_CATALOG_URL": task.catalog_url, "HCDC_DATA_DIR": task.data_dir},
        )
        elapsed = time.perf_counter() - t0
        html = render_html(executed) if executed.exists() else None
        with catalog.session() as session:
            row = session.get(Reduction, reduction_id)
            row.report_path = str(html) if html else None
            if error and row.status != "failed":
                row.status, row.error = "failed", error
                row.science_seconds = None
                row.finished_at = datetime.now(timezone.utc)
            status, compute = (
                row.status,
                _seconds_between(row.started_at, row.finished_at),
            )
            row_error = row.error
            science = row.science_seconds
        with named_write(log_path):
            log_path.write_text(
                json.dumps(
                    {
                        "step": step,
                        "observation_id": task.observation_id,
                        "attempt": attempt,
                        "papermill_run_id": run_id,
                        "status": status,
                        "seconds": elapsed,
                        "error": error or (row_error if status == "failed" else None),
                    },
                    indent=1,
                )
            )
        if status == "done":
            _join_campaign(catalog, task.campaign_id, reduction_id)
            return StepOutcome(
                task.observation_id,
                step,
                "done",
                reduction_id,
                None,
                seconds=time.perf_counter() - started,
                compute_seconds=compute,
                science_seconds=science,
                attempts=attempt,
            )
        error = row_error or error
    return StepOutcome(
        task.observation_id,
        step,
        "failed",
        reduction_id,
        error,
        seconds=time.perf_counter() - started,
        attempts=task.retries + 1,
    )
