"""Faults during a campaign, each ending with the catalog of an undisturbed run (issue 17).

* the project's own PostgreSQL cluster (scram auth, run by the service account) stopped and
  started while the campaign runs: connections recover, the interrupted step is retried, and the
  detections and limits equal those of an undisturbed run, with no duplicate row.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from hcdc.catalog.models import Detection, DetectionLimit, Reduction
from hcdc.pipeline.campaign import reprocess
from hcdc.settings import Settings

from .isolation.test_postgres import cluster  # noqa: F401 - the project's own cluster, started by the CLI
from .test_pipeline import _parameters, _science_rows, _setup
from .test_warm_kernel import _heartbeat_threads

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_postgresql_restarted_mid_campaign(cluster, pipeline_archive, undisturbed_campaign, tmp_path):  # noqa: F811
    project, _env = cluster
    params = _parameters(tmp_path)

    catalog, _ = _setup(pipeline_archive, project.url(), tmp_path / "pg")
    settings = Settings(data_dir=tmp_path / "pg", catalog_url=project.url(), pipeline_retries=2)
    holder: dict = {}

    def run():
        try:
            holder["report"] = reprocess(catalog, settings, campaign="pg", executor="serial", parameters=params)
        except Exception as exc:  # the test reports it below
            holder["error"] = exc

    heartbeats = _heartbeat_threads()
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    with catalog.session() as session:
        while time.monotonic() < deadline:  # the first observation done, the second one's step under way
            done = session.scalar(select(func.count()).select_from(Reduction).where(Reduction.status == "done"))
            running = session.scalar(select(func.count()).select_from(Reduction).where(Reduction.status == "running"))
            if done >= 2 and running >= 1:
                break
            session.expire_all()
            time.sleep(0.2)
    assert done >= 2 and running >= 1, (done, running)
    restart = project.stop() + project.start()
    assert project.running(), restart
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert _heartbeat_threads() == heartbeats  # the finished thread's kernel was stopped with its campaign
    assert "error" not in holder, holder.get("error")
    report = holder["report"]
    assert not report.failures, report.failures
    assert _science_rows(catalog, "pg") == undisturbed_campaign.rows
    with catalog.session() as session:
        statuses = [r.status for r in session.scalars(select(Reduction))]
        attempts = [r.attempts for r in session.scalars(select(Reduction))]
        n_detections = session.scalar(select(func.count()).select_from(Detection))
        n_limits = session.scalar(select(func.count()).select_from(DetectionLimit))
    assert n_detections == undisturbed_campaign.n_detections  # no duplicate rows
    assert n_limits == undisturbed_campaign.n_limits
    # no step left running; the interrupted one (when the restart caught a step talking to the
    # database: seen as attempts == 2 on this machine) was retried
    assert "running" not in statuses and "failed" not in statuses, (statuses, attempts)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 MB tmpfs mounted for the products (root only), unmounted afterwards."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "products-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder, leave_bytes: int):
    """A filler file taking all but ``leave_bytes`` of the filesystem of ``folder``."""
    import os

    filler = folder / "filler.bin"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as handle:
        block = b"\0" * (1 << 20)
        remaining = max(free - leave_bytes, 0)
        while remaining > 0:
            handle.write(block[: min(len(block), remaining)])
            remaining -= len(block)
    return filler


def test_products_disk_full_fails_clearly_registers_nothing_partial_and_resumes(
    pipeline_archive, undisturbed_campaign, small_disk, tmp_path
):
    from hcdc.catalog.backup import check_products

    params = _parameters(tmp_path)

    data_dir = small_disk / "data"
    catalog, settings = _setup(pipeline_archive, f"sqlite:///{tmp_path / 'catalog.sqlite'}", data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    filler = _fill(small_disk, leave_bytes=3 << 20)  # room for the first products, not for all
    first = reprocess(catalog, settings, campaign="full", executor="serial", parameters=params, retries=0)
    assert first.failures, "the disk never filled"
    for _observation, step, error in first.failures:
        assert "No space left on device" in error and str(small_disk) in error, (step, error)
    check = check_products(catalog)  # every registered product is whole: its file and its SHA-256
    assert check.ok, check
    with catalog.session() as session:
        failed = [r.id for r in session.scalars(select(Reduction).where(Reduction.status == "failed"))]
        from hcdc.catalog.models import Product

        assert not session.scalar(select(func.count()).select_from(Product).where(Product.reduction_id.in_(failed)))
    filler.unlink()  # space is back
    resumed = reprocess(catalog, settings, campaign="full", executor="serial", parameters=params, retries=0)
    assert not resumed.failures, resumed.failures
    assert _science_rows(catalog, "full") == undisturbed_campaign.rows
    assert check_products(catalog).ok
