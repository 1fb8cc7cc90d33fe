"""The ``hcdc`` command line.

Every command reads the one validated configuration (:mod:`hcdc.settings`), so
``HCDC_CATALOG_URL`` and ``HCDC_DATA_DIR`` point all of them at another catalog.
Tables for scripts go to stdout; progress and human messages go to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from pathlib import Path

import click

from .settings import Settings, get_settings, shown_url


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic ValidationError: show the message, not a traceback
        raise click.ClickException(f"invalid configuration: {exc}") from exc


_announced: set[str] = set()


def _catalog(migrate: bool = True):
    """The configured catalog; the first time in a process, say on stderr which one and which data directory.

    ``hcdc catalog summary`` after ``make demo`` reads ``$XDG_DATA_HOME/hcdc`` unless ``HCDC_DATA_DIR``
    names the demo's folder: the line makes that visible without mixing into the command's output.
    """
    from .catalog.db import Catalog

    settings = _settings()
    url = settings.resolved_catalog_url
    if url not in _announced:
        _announced.add(url)
        _echo_err(f"catalog: {shown_url(url)} (data directory {settings.data_dir})")
    try:
        return Catalog(url, migrate=migrate)
    except Exception as exc:
        raise click.ClickException(f"cannot open the catalog at {shown_url(url)}: {exc}") from exc


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def _iso_date(_ctx, _param, value):
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


class _LazyGroup(click.Group):
    """A group whose heavy commands are imported when used, not at every ``hcdc`` start.

    ``preprocess`` and ``postprocess`` build their options from the science's parameter dataclasses, whose
    imports (scipy, photutils, vip-hci) took 2 of the 2.8 s every command spent starting.
    """

    LAZY = {"preprocess": "hcdc.preprocess_cmd:preprocess", "postprocess": "hcdc.postprocess_cmd:postprocess"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            module, attribute = self.LAZY[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """HC-DC, the High-Contrast Data Center: archive, catalog and reductions."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    if click.get_current_context().invoked_subcommand not in ("hub", "kernel", "vo"):  # vo: its commands switch
        # everything written from here on is the platform account's, closed to PIs (hcdc.accounts)
        from .accounts import act_as_data_dir_owner

        try:
            settings = get_settings()
        except ValueError:  # invalid settings: the command itself reports them
            settings = None
        who = act_as_data_dir_owner(settings.data_dir, settings.service_user) if settings else None
        if who:
            logging.getLogger("hcdc").info("acting as %s, the owner of %s", who, settings.data_dir)


# --- simulate -------------------------------------------------------------------------


@main.command("truth-check")
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
def truth_check(archive: Path) -> None:
    """Compare the catalog with the ground truth of a simulated ARCHIVE (exit 1 on any difference)."""
    from .truthcheck import compare_with_truth

    with _catalog().session() as session:
        result = compare_with_truth(session, archive / "truth.json")
    click.echo(result.render())
    if not result.ok:
        raise SystemExit(1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--nights", default=3, show_default=True, type=click.IntRange(1, 400), help="Observing nights.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same archive).")
@click.option(
    "--window",
    default=None,
    type=click.IntRange(16, 1024),
    help="Detector window per band in pixels (default: full 1024x2048 IRDIS detector).",
)
@click.option("--start-date", default=None, callback=_iso_date, help="First night (YYYY-MM-DD).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on a terminal.")
def simulate(
    directory: Path, nights: int, seed: int, window: int | None, start_date: date | None, progress: bool
) -> None:
    """Write a realistic simulated raw SPHERE archive into DIRECTORY.

    Raw files go to DIRECTORY/raw, the programme and target tables to
    DIRECTORY/programmes.ecsv and DIRECTORY/targets.ecsv, and the ground truth
    (never in the raw headers) to DIRECTORY/truth.json.
    """
    from reduction.simulator import simulate_archive

    kwargs = {"nights": nights, "seed": seed, "window": window, "progress": progress and sys.stderr.isatty()}
    if start_date is not None:
        kwargs["start_date"] = start_date
    from .demo import write_target_table

    truth = simulate_archive(directory, **kwargs)
    write_target_table(directory / "truth.json", directory / "targets.ecsv")
    _echo_err(
        f"simulated {nights} night(s), {len(truth.observations)} observation(s) in {directory}: "
        f"raw files in {directory / 'raw'}, then\n  hcdc ingest {directory / 'raw'} "
        f"--programmes {directory / 'programmes.ecsv'} --targets {directory / 'targets.ecsv'}"
    )


# --- ingest ---------------------------------------------------------------------------


@main.command()
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--programmes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Programme table (ECSV, CSV or VOTable): prog_id (required, e.g. 0111.C-0001(A)), pi (the PI's user "
    "name: the hub login, equal to users.username), pi_name, co_is (co-I user names, comma-separated), co_i_names "
    "(their full names, semicolon-separated, same order), title, proprietary_months (default 12). Example in the "
    "README.",
)
@click.option(
    "--targets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Target table (name, ra_deg, dec_deg, pm, parallax, spectral_type, age_myr, mag_*, aliases).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes reading headers (default: setting ingest_workers).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on a terminal.")
def ingest(directory: Path, programmes: Path | None, targets: Path | None, workers: int | None, progress: bool) -> None:
    """Classify the raw files below DIRECTORY and record them in the catalog.

    Idempotent and incremental: files already recorded (same path, size and
    modification time) are not read again. Unreadable or unclassifiable files
    are recorded as rejected, with the reason, and never stop the run.
    """
    from .ingest import ingest as run_ingest

    settings = _settings()
    catalog = _catalog()
    report = run_ingest(
        directory,
        catalog,
        programmes=programmes,
        targets=targets,
        progress=progress and sys.stderr.isatty(),
        batch_size=settings.ingest_batch_size,
        workers=workers or settings.ingest_workers,
        default_proprietary_months=settings.proprietary_months,
    )
    _echo_err(
        f"ingest {report.root}: {report.seen} FITS file(s) seen, {report.new} new, {report.updated} changed, "
        f"{report.unchanged} unchanged, {len(report.rejected)} rejected; observations +{report.observations_added} "
        f"~{report.observations_updated} -{report.observations_removed}; calibration links "
        f"+{report.calibration_links_added} -{report.calibration_links_removed} ({report.seconds:.1f} s)"
    )
    if report.ignored_not_fits:
        _echo_err(f"  {report.ignored_not_fits} file(s) without a FITS name were not read")
    if report.rejected:
        _echo_err("rejected files:")
        for rejection in report.rejected:
            keyword = f" [{rejection.keyword}]" if rejection.keyword else ""
            _echo_err(f"  {rejection.path}: {rejection.reason}{keyword}")


# --- register external cubes -------------------------------------------------------


@main.command("register-reduced")
@click.argument("cube", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--angles",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FITS file of derotation angles (vip-hci convention), one per frame.",
)
@click.option(
    "--psf",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FITS file of the off-axis PSF.",
)
@click.option("--pixel-scale", required=True, type=float, help="Pixel scale in arcsec/px.")
@click.option("--instrument", required=True, help="Instrument (SPHERE-IRDIS, SPHERE-IFS, NACO, GPI).")
@click.option("--target", required=True, help="Target name.")
@click.option("--date", "night", required=True, callback=_iso_date, help="Observing night (YYYY-MM-DD).")
@click.option("--programme", default=None, help="Programme id.")
@click.option("--pi", default=None, help="PI name.")
@click.option("--filter", "filter_", default=None, help="Filter.")
@click.option(
    "--release-date",
    default=None,
    callback=_iso_date,
    help="Public from this date (default: date + proprietary period).",
)
@click.option("--reference", default=None, help="Publication or data set the cube comes from.")
@click.option(
    "--angle-offset",
    type=float,
    default=0.0,
    show_default=True,
    help="Degrees added to every angle of --angles, when its convention leaves out a constant (a pupil or "
    "true-north offset): the registered angles must give north up. Needs --angle-offset-source.",
)
@click.option("--angle-offset-source", default=None, help="Where the angle offset comes from (recorded).")
@click.option(
    "--recenter",
    type=click.Choice(["negative", "positive"]),
    default=None,
    help="Re-centre the cube at registration by a 2-D Gaussian fit per frame: negative for a vortex/AGPM dark "
    "hole, positive for a visible star. Default: keep the provider's centring.",
)
@click.option(
    "--centre-uncertainty",
    type=click.FloatRange(0, None),
    default=1.0,
    show_default=True,
    help="1-sigma (px per axis) of the provider's centring, counted in every detection's error budget "
    "(ignored with --recenter, which measures it).",
)
@click.option(
    "--star-flux",
    type=click.FloatRange(0, None, min_open=True),
    default=None,
    help="The star's flux in a 1-FWHM-diameter aperture, in cube units (gives contrasts).",
)
def register_reduced(
    cube,
    angles,
    psf,
    pixel_scale,
    instrument,
    target,
    night,
    programme,
    pi,
    filter_,
    release_date,
    reference,
    angle_offset,
    angle_offset_source,
    recenter,
    centre_uncertainty,
    star_flux,
) -> None:
    """Register an already-calibrated CUBE (reduced elsewhere) as an observation.

    The angles must be derotation angles in the vip-hci convention that put north up; a file that
    leaves out a constant offset is registered with --angle-offset (and its source).
    """
    from .external import ExternalCube, ExternalCubeError, register_external

    settings = _settings()
    spec = ExternalCube(
        cube=cube.resolve(),
        angles=angles.resolve(),
        psf=psf.resolve(),
        pixel_scale_arcsec=pixel_scale,
        instrument=instrument,
        target=target,
        night=night,
        programme=programme,
        pi=pi,
        filter=filter_,
        release_date=release_date,
        reference=reference,
        angle_offset_deg=angle_offset,
        angle_offset_source=angle_offset_source,
        recenter=recenter,
        centre_uncertainty_px=centre_uncertainty,
        star_flux=star_flux,
    )
    try:
        result = register_external(_catalog(), spec, settings.data_dir, settings.proprietary_months)
    except (ExternalCubeError, KeyError) as exc:
        raise click.ClickException(str(exc).strip('"')) from exc
    verb = "registered" if result.created else "already registered"
    _echo_err(
        f"{verb}: observation {result.observation_id} {result.key} ({result.n_frames} frames, "
        f"field rotation {result.field_rotation_deg:.1f} deg)"
    )


# --- pre-processing -----------------------------------------------------------------


@main.command()
@click.option("--campaign", default="systematic", show_default=True, help="Campaign name.")
@click.option(
    "--observations",
    "query",
    default=None,
    help="Which observations, e.g. 'instrument=SPHERE-IRDIS; night>=2026-06-01; id=3,4' (default: all).",
)
@click.option(
    "--executor",
    type=click.Choice(["serial", "local", "slurm"]),
    default="local",
    show_default=True,
    help="serial: this process; local: a dask LocalCluster; slurm: dask-jobqueue SLURMCluster.",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML of step parameters overriding hcdc/pipeline/campaign_defaults.yaml.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=None,
    help="Retries of a failing step (default: setting pipeline_retries).",
)
@click.option("--new-version", is_flag=True, help="Start a new version of the campaign (a new release).")
@click.option("--steps", default="preprocess,postprocess", show_default=True, help="Steps to run.")
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Run nothing: write what each observation's steps would do (run, up-to-date, after an earlier step, "
    "no input, skipped and why) as CSV on stdout, with the counts on stderr. Observations with nothing to do "
    "are counted, not listed, unless --plan-all.",
)
@click.option("--plan-all", is_flag=True, help="With --plan: list every observation.")
def reprocess(
    campaign: str,
    query: str | None,
    executor: str,
    params_file: Path | None,
    retries: int | None,
    new_version: bool,
    steps: str,
    plan_only: bool,
    plan_all: bool,
) -> None:
    """Plan and run a campaign: every step that is missing or out of date, on dask.

    A step is up to date when its version, parameters and input hashes are
    unchanged; re-running a campaign runs nothing, an interrupted one resumes.
    With --plan, only say what would run.
    """
    if plan_all and not plan_only:
        raise click.UsageError("--plan-all goes with --plan")
    if plan_only:
        _plan(query, params_file, steps, plan_all)
        return
    from .pipeline.campaign import (
        QueryError,
        compare_campaigns,
        load_parameters,
        previous_campaign_id,
    )
    from .pipeline.campaign import reprocess as run_campaign

    settings = _settings()
    cat = _catalog()
    try:
        parameters = load_parameters(params_file)
        report = run_campaign(
            cat,
            settings,
            campaign=campaign,
            query=query,
            executor=executor,
            parameters=parameters,
            retries=retries,
            new_version=new_version,
            steps=[s.strip() for s in steps.split(",") if s.strip()],
            progress=sys.stderr.isatty(),
            announce=_echo_err,
        )
    except (QueryError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    counts = report.counts
    _echo_err(
        f"campaign {report.campaign} v{report.version} ({report.executor}): {report.observations} "
        f"observation(s); steps run {report.steps_run} (done {counts['done']}, failed {counts['failed']}), "
        f"up to date {counts['up-to-date']}, skipped {counts['skipped']} in {report.seconds:.0f} s "
        f"(planned in {report.planning_seconds:.1f} s)"
    )
    for observation_id, step, error in report.failures:
        _echo_err(f"  FAILED obs {observation_id} {step}: {error.splitlines()[0] if error else '?'}")
    with cat.session() as session:
        comparison = compare_campaigns(session, report.campaign_id, previous_campaign_id(session, report.campaign_id))
    click.echo(comparison.render())
    _echo_err(f"reports: {settings.data_dir / 'reports' / f'campaign{report.campaign_id:04d}'}")
    if report.failures:
        raise SystemExit(3)


def _plan(query: str | None, params_file: Path | None, steps: str, everything: bool) -> None:
    from astropy.table import Table

    from .pipeline.campaign import QueryError, load_parameters
    from .pipeline.plan import plan_campaign
    from .tables import write_table

    try:
        plan = plan_campaign(
            _catalog(),
            query=query,
            parameters=load_parameters(params_file),
            steps=[s.strip() for s in steps.split(",") if s.strip()],
        )
    except (QueryError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    rows = plan.rows(everything)
    names = ("observation_id", "observation", "steps", "skipped")
    write_table(Table(rows=[[r[n] for n in names] for r in rows] or None, names=names), "csv")
    _echo_err(plan.summary())


@main.command()
@click.option("--reduction", "reduction_id", type=int, default=None, help="A reduction id.")
@click.option("--detection", "detection_id", type=int, default=None, help="A detection id.")
@click.option("--limit", "limit_id", type=int, default=None, help="A detection-limit id.")
@click.option("--product", "product_id", type=int, default=None, help="A product id.")
def provenance(reduction_id, detection_id, limit_id, product_id) -> None:
    """Where a catalog row comes from: step, parameters, inputs, code, notebook, report."""
    from .catalog.models import Detection, DetectionLimit, Product, Reduction

    given = [v for v in (reduction_id, detection_id, limit_id, product_id) if v is not None]
    if len(given) != 1:
        raise click.ClickException("give exactly one of --reduction, --detection, --limit, --product")
    from reduction.postproc.tables import ERROR_BUDGET_FIELDS

    budget = None
    with _catalog().session() as session:
        for model, value in ((Detection, detection_id), (DetectionLimit, limit_id), (Product, product_id)):
            if value is not None:
                row = session.get(model, value)
                if row is None:
                    raise click.ClickException(f"no {model.__tablename__[:-1].replace('_', ' ')} {value}")
                reduction_id = row.reduction_id
                if model is Detection:
                    budget = {
                        "detection": row.id,
                        "totals": {k: getattr(row, k) for k in ("sep_err_arcsec", "pa_err_deg", "contrast_err")},
                        "terms": {k: getattr(row, k) for k in ERROR_BUDGET_FIELDS},
                        "centre_status": row.centre_status,
                        "note": row.note,
                    }
        reduction = session.get(Reduction, reduction_id)
        if reduction is None:
            raise click.ClickException(f"no reduction {reduction_id}")
        record = {
            "reduction": reduction.id,
            "observation": reduction.observation_id,
            "step": reduction.step,
            "step_version": reduction.step_version,
            "status": reduction.status,
            "signature": reduction.signature,
            "parameters": reduction.parameters,
            "inputs": reduction.inputs,
            "code_version": reduction.code_version,
            "git_commit": reduction.git_commit,
            "environment_sha256": reduction.environment_sha256,
            "host": reduction.host,
            "papermill_run_id": reduction.papermill_run_id,
            "notebook": reduction.notebook_path,
            "report": reduction.report_path,
            "log": reduction.log_path,
            "started": reduction.started_at.isoformat() if reduction.started_at else None,
            "finished": reduction.finished_at.isoformat() if reduction.finished_at else None,
            "science_seconds": reduction.science_seconds,
            "error": reduction.error,
            "products": [{"kind": p.kind, "path": p.path, "sha256": p.sha256} for p in reduction.products],
            "rerun": f"hcdc rerun {reduction.id}",
        }
        if budget is not None:
            # the observation's systematic terms (and their sources), as the band's detections table recorded them
            budget["systematics"] = [
                (p.meta or {}).get("systematics")
                for p in reduction.products
                if p.kind.startswith("detections") and (p.meta or {}).get("wavelength_um") == row.wavelength_um
            ]
            record["error_budget"] = budget
    click.echo(json.dumps(record, indent=2, default=str))


@main.command()
@click.argument("reduction_id", type=int)
def rerun(reduction_id: int) -> None:
    """Run a reduction's step again on its observation with the same parameters (outside any campaign)."""
    from .catalog.models import Reduction
    from .pipeline.runner import ChainTask, run_chain

    settings = _settings()
    cat = _catalog()
    with cat.session() as session:
        reduction = session.get(Reduction, reduction_id)
        if reduction is None:
            raise click.ClickException(f"no reduction {reduction_id}")
        if reduction.step not in ("preprocess", "postprocess"):
            raise click.ClickException(f"reduction {reduction_id} is a {reduction.step!r}: nothing to re-run")
        task = ChainTask(
            observation_id=reduction.observation_id,
            campaign_id=None,
            steps=(reduction.step,),
            parameters={reduction.step: reduction.parameters},
            catalog_url=cat.url,
            data_dir=str(settings.data_dir),
            retries=0,
            force=True,
        )
    result = run_chain(task).steps[0]
    _echo_err(
        f"re-ran {result.step} of observation {result.observation_id}: {result.status}, "
        f"reduction {result.reduction_id}" + (f" ({result.error})" if result.error else "")
    )
    if result.status != "done":
        raise SystemExit(3)


# --- catalog --------------------------------------------------------------------------


@main.group()
def catalog() -> None:
    """Look at the catalog: summary for people, tables for scripts."""


@catalog.command()
def summary() -> None:
    """A summary of the catalog, readable at a glance."""
    from .summary import render_summary

    cat = _catalog()
    with cat.session() as session:
        click.echo(render_summary(session, url=cat.url))


def _format_option(function):
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["csv", "ecsv", "votable"]),
        default="csv",
        show_default=True,
        help="Output format on stdout.",
    )(function)


@catalog.command()
@_format_option
@click.option("--instrument", default=None, help="Only this instrument.")
@click.option("--target", default=None, help="Only this target (name or alias).")
@click.option("--night", default=None, callback=_iso_date, help="Only this night (YYYY-MM-DD).")
def observations(fmt: str, instrument: str | None, target: str | None, night: date | None) -> None:
    """The observations as a table (one row per observation)."""
    from .tables import observations_table, write_table

    with _catalog().session() as session:
        write_table(observations_table(session, instrument=instrument, target=target, night=night), fmt)


@catalog.command()
@_format_option
@click.option("--campaign", default=None, help="Campaign name (default: the latest finished campaign).")
def detections(fmt: str, campaign: str | None) -> None:
    """Detections of the latest campaign, one row per detection (sep, PA, contrast, S/N with errors)."""
    from .tables import detections_table, latest_campaign, write_table

    with _catalog().session() as session:
        write_table(detections_table(session, latest_campaign(session, campaign)), fmt)


@catalog.command()
@_format_option
@click.option("--campaign", default=None, help="Campaign name (default: the latest finished campaign).")
def limits(fmt: str, campaign: str | None) -> None:
    """5-sigma contrast curves of the latest campaign, one row per (observation, wavelength, separation)."""
    from .tables import latest_campaign, limits_table, write_table

    with _catalog().session() as session:
        write_table(limits_table(session, latest_campaign(session, campaign)), fmt)


@catalog.command()
@_format_option
@click.option("--campaign", default=None, help="Campaign name (default: the latest finished campaign).")
def spectra(fmt: str, campaign: str | None) -> None:
    """Spectra of the latest campaign's IFS detections, one row per (detection, channel), with errors."""
    from .tables import latest_campaign, spectra_table, write_table

    with _catalog().session() as session:
        write_table(spectra_table(session, latest_campaign(session, campaign)), fmt)


@catalog.command()
@_format_option
def rejected(fmt: str) -> None:
    """The files ingest rejected, with the reason and the keyword."""
    from .tables import rejected_table, write_table

    with _catalog().session() as session:
        write_table(rejected_table(session), fmt)


@catalog.command("sources")
@_format_option
@click.option("--target", default=None, help="Only this target (name or alias).")
def catalog_sources(fmt: str, target: str | None) -> None:
    """Sources across epochs, one row per source: co-moving / background / undetermined, with the odds.

    Sources are made by `hcdc sources link` (the campaign runs it too); the verdict is computed from every
    epoch (this command reads the catalog as staff; the catalog service applies the access rule).
    """
    from .sources import sources_table
    from .tables import write_table

    try:
        with _catalog().session() as session:
            write_table(sources_table(session, target_name=target), fmt)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@catalog.command("photometry")
@_format_option
@click.option("--source", "source_id", type=int, default=None, help="Only this source (id).")
@click.option("--target", default=None, help="Only this target's sources (name or alias).")
def catalog_photometry(fmt: str, source_id: int | None, target: str | None) -> None:
    """The photometry of each source across bands and instruments: one row per detection and band or channel.

    IRDIS and NACO detections give their band's contrast, IFS detections their spectrum channel by channel;
    the IRDIS and IFS detections of one IRDIFS OB linked into one source (`hcdc sources link`) appear side
    by side. Read as staff, like `hcdc catalog sources`; the catalog service applies the access rule.
    """
    from .sources import photometry_table
    from .tables import write_table

    try:
        with _catalog().session() as session:
            write_table(photometry_table(session, source_id=source_id, target_name=target), fmt)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def sources() -> None:
    """Sources across epochs: link detections into sources, plot their background tracks."""


@sources.command("link")
@click.option("--target", default=None, help="Only this target (name or alias); default: every target.")
def sources_link(target: str | None) -> None:
    """Link the detections of every epoch (and the registered published astrometry) into sources; idempotent."""
    from .known_companions import load_known_companions
    from .sources import link_sources

    try:
        known = load_known_companions(_settings())
        with _catalog().session() as session:
            summary = link_sources(session, target, known=known)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_err(
        f"{summary.targets} target(s): {summary.sources} source(s) from {summary.linked} epoch(s) "
        f"({summary.new_sources} new, {summary.removed_sources} removed)"
    )
    for name, reason in summary.skipped.items():
        _echo_err(f"  {name}: {reason}")


@sources.command("plot")
@click.argument("source_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG file to write (default: source_<ID>.png in the current directory).",
)
def sources_plot(source_id: int, output: Path | None) -> None:
    """ΔRA and ΔDec of a source against time, with the background track and its 1- and 2-sigma band (PNG)."""
    from .sources import plot_source_png

    output = output or Path(f"source_{source_id}.png")
    try:
        with _catalog().session() as session:
            path = plot_source_png(session, source_id, output)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_err(f"wrote {path}")


@main.command("register-astrometry")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="The host star (name or alias in the catalog).")
@click.option("--reference", required=True, help="Where the numbers come from (bibcode or citation).")
@click.option(
    "--object-name", default=None, help="The companion's name in the publication (e.g. b); overrides the file's."
)
@click.option("--instrument", default=None, help="Instrument of the published epochs (when the file has none).")
def register_astrometry_cmd(
    file: Path, target: str, reference: str, object_name: str | None, instrument: str | None
) -> None:
    """Register published relative astrometry of a companion (external provenance) for the sources' tests.

    FILE is CSV or ECSV with columns epoch_mjd, sep_arcsec, sep_err_arcsec, pa_deg, pa_err_deg (optional:
    object_name, instrument), or orbitize!'s format (epoch in MJD; sep, sep_err in mas; pa, pa_err in
    degrees; object). Rows without a separation (radial velocities) are skipped. Idempotent: the same
    epoch of the same object from the same reference is updated, not added twice. Then run `hcdc sources link`.
    """
    from .sources import read_astrometry_file, register_astrometry

    try:
        rows = read_astrometry_file(file)
        if object_name is not None:
            for row in rows:
                row["object_name"] = object_name
        with _catalog().session() as session:
            added, updated = register_astrometry(session, target, rows, reference, instrument)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_err(f"{file}: {added} epoch(s) added, {updated} already there (updated) for {target}")


# --- configuration and database ---------------------------------------------------


@main.group()
def config() -> None:
    """Show the configuration."""


@config.command("show")
def config_show() -> None:
    """Every setting, its value, where the value came from (default, file, environment) and its help."""
    for name, value, help_text, source in _settings().describe():
        click.echo(f"{name:22s} {value}   [{source}]\n{'':22s} {help_text}")


@config.command("schema")
def config_schema() -> None:
    """The JSON schema of the configuration (for a YAML file named by HCDC_CONFIG)."""
    click.echo(json.dumps(Settings.model_json_schema(), indent=2, default=str))


@main.group()
def db() -> None:
    """Catalog schema migrations (Alembic), backups, and the project's own PostgreSQL cluster."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the catalog to the revision given by --revision (default: head, the code's); creates it when empty."""
    from .catalog.db import upgrade

    url = _settings().resolved_catalog_url
    upgrade(url, revision)
    _echo_err(f"catalog {shown_url(url)} at revision {revision}")


@db.command("current")
def db_current() -> None:
    """The catalog's schema revision and the code's."""
    from .catalog.db import current_revision, head_revision

    cat = _catalog(migrate=False)
    click.echo(f"database: {current_revision(cat.engine)}  code: {head_revision()}")


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def db_backup(file: Path) -> None:
    """Write a consistent backup of the catalog to FILE (SQLite: online backup; PostgreSQL: pg_dump).

    FILE is written readable by its owner only (it holds proprietary rows) and replaced when it
    exists. The product files are not in it: they stay where the catalog points, with their
    SHA-256, which `hcdc db restore` checks."""
    from .catalog.backup import BackupError, backup

    url = _settings().resolved_catalog_url
    try:
        report = backup(url, file)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_err(f"catalog {shown_url(url)} backed up to {report.path} ({report.engine}, {report.size_bytes} bytes)")
    click.echo(f"{report.sha256}  {report.path}")


@db.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask before replacing the catalog.")
def db_restore(file: Path, yes: bool) -> None:
    """Replace the catalog by the backup FILE (all or nothing), then check the product files.

    The backup must come from the same engine as the configured catalog. Every product row's file
    is then checked against its recorded SHA-256; missing or changed files are listed (exit code 1)."""
    from .catalog.backup import BackupError, check_products, restore
    from .catalog.db import Catalog

    url = _settings().resolved_catalog_url
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("restoring replaces the whole catalog: add --yes to confirm")
        click.confirm(f"replace the catalog {shown_url(url)} by {file}?", abort=True)
    try:
        restore(url, file)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        catalog = Catalog(url)  # a backup of an older schema is migrated to the code's
        try:
            check = check_products(catalog)
        finally:
            catalog.dispose()
    except Exception as exc:
        raise click.ClickException(
            f"the catalog {shown_url(url)} was replaced by {file}, but it cannot be opened as an HC-DC catalog "
            f"of this version ({type(exc).__name__}: {exc}); restore a backup made by this version"
        ) from exc
    _echo_err(f"catalog {shown_url(url)} restored from {file}; {check.products} product row(s)")
    for path in check.missing:
        _echo_err(f"  missing product file: {path}")
    for path in check.changed:
        _echo_err(f"  product file differs from its recorded SHA-256: {path}")
    if not check.ok:
        raise SystemExit(1)


@db.group("cluster")
def db_cluster() -> None:
    """The project's own PostgreSQL cluster (scram-sha-256 only, owned by the service account)."""


def _project_cluster(port: int):
    from .pgcluster import ProjectCluster

    settings = _settings()
    return ProjectCluster.for_data_dir(settings.data_dir, port=port, owner=settings.service_user)


_port_option = click.option(
    "--port",
    type=int,
    default=5433,
    show_default=True,
    envvar="HCDC_PG_PORT",
    help="Port on 127.0.0.1 (env HCDC_PG_PORT); not the machine's shared 5432.",
)


@db_cluster.command("start")
@_port_option
def db_cluster_start(port: int) -> None:
    """Create the cluster under <data_dir>/postgres when missing, start it, print its catalog URL.

    As root, the data directory is given to the service account first (the cluster is its own)."""
    from .accounts import run_as_service_account
    from .pgcluster import ClusterError

    run_as_service_account(_settings(), say=_echo_err)
    cluster = _project_cluster(port)
    try:
        for line in cluster.start():
            _echo_err(line)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_err(f"PostgreSQL ready on 127.0.0.1:{port}; use: HCDC_CATALOG_URL='{cluster.url()}'")
    click.echo(cluster.url())


@db_cluster.command("stop")
@_port_option
def db_cluster_stop(port: int) -> None:
    """Stop the cluster (fast shutdown: open sessions are closed)."""
    for line in _project_cluster(port).stop() or ["not running"]:
        _echo_err(line)


@db_cluster.command("url")
@_port_option
def db_cluster_url(port: int) -> None:
    """The catalog URL of the cluster (the password stays in its pass file)."""
    click.echo(_project_cluster(port).url())


@main.group()
def vo() -> None:
    """The public VO service (GAVO DaCHS): TAP/ADQL, ObsCore, cone search and DataLink on the released catalog.

    \b
    hcdc vo setup     create the instance under <data_dir>/vo (its own PostgreSQL, dachs init, tables)
    hcdc vo publish   serve exactly the released rows and products of HCDC_CATALOG_URL
    hcdc vo serve     run the VO server on 127.0.0.1 (TAP: http://127.0.0.1:PORT/tap)
    """


def _vo_instance(port: int | None = None):
    from .accounts import run_as_service_account
    from .vo import VOError, VOInstance, ensure_pgsphere_loadable

    settings = _settings()
    if port is not None:
        settings = settings.model_copy(update={"vo_port": port})
    try:
        ensure_pgsphere_loadable(say=_echo_err)  # as root, before dropping to the service account
    except VOError as exc:
        raise click.ClickException(str(exc)) from exc
    run_as_service_account(settings, say=_echo_err)
    return VOInstance(settings)


def _vo_setup(instance) -> None:
    from .pgcluster import ClusterError
    from .vo import VOError

    try:
        for line in instance.setup(say=_echo_err):
            _echo_err(f"  {line}")
    except (VOError, ClusterError) as exc:
        raise click.ClickException(str(exc)) from exc


@vo.command("setup")
def vo_setup() -> None:
    """Create or update the VO instance (idempotent): database cluster, DaCHS, configuration, tables."""
    instance = _vo_instance()
    _vo_setup(instance)
    _echo_err(f"VO instance ready in {instance.root}; publish with: hcdc vo publish; serve with: hcdc vo serve")


@vo.command("publish")
def vo_publish() -> None:
    """Write the released rows only (nothing proprietary, nothing without a release date) of the catalog
    named by HCDC_CATALOG_URL into the VO tables, and the released product files beside them.

    Idempotent: a second run changes nothing; after a campaign or a release date passing it adds,
    updates and withdraws exactly what differs, and says so per table."""
    from .vo import VOError

    instance = _vo_instance()
    _vo_setup(instance)
    try:
        report = instance.publish(instance.settings.resolved_catalog_url)
    except VOError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_err(f"published the catalog as released on {date.today()} to {instance.tap_url}:")
    for line in report.lines():
        _echo_err(line)
    if report.problems:
        raise SystemExit(1)


@vo.command("serve")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: the setting vo_port).")
def vo_serve(port: int | None) -> None:
    """Run the VO server (DaCHS) on 127.0.0.1 in the foreground; TAP at http://127.0.0.1:PORT/tap."""
    from .vo import VOError

    instance = _vo_instance(port)
    _vo_setup(instance)
    try:
        instance.refresh_access_urls()
    except VOError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_err(
        f"VO service on {instance.server_url}: TAP {instance.tap_url}, cone search "
        f"{instance.server_url}/hcdc/q/cone/scs.xml (Ctrl-C stops it)"
    )
    instance.serve()


@vo.command("stop")
def vo_stop() -> None:
    """Stop the VO instance's PostgreSQL cluster (a running 'hcdc vo serve' is stopped with Ctrl-C)."""
    instance = _vo_instance()
    for line in instance.cluster.stop() or ["not running"]:
        _echo_err(line)


@main.group()
def kernel() -> None:
    """The HC-DC Jupyter kernel spec."""


@kernel.command("install")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Install prefix (default: this environment, sys.prefix).",
)
def kernel_install(prefix: Path | None) -> None:
    """Install kernels/hcdc as kernel 'hcdc' running this environment's Python, and the JupyterLab
    defaults of hub users (no Jupyter news prompt) in the same prefix."""
    from .kernelspec import install_kernel, install_lab_overrides

    destination = install_kernel(prefix)
    _echo_err(f"kernel 'hcdc' installed in {destination}")
    _echo_err(f"JupyterLab defaults for hub users in {install_lab_overrides(prefix)}")


def _register_commands() -> None:
    """Command groups that live in their own modules."""
    from .hub import main as hub_group

    main.add_command(hub_group, "hub")


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
