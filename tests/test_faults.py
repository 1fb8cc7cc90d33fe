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
from .test_pipeline import _parameters, _science_rows, _setup, archive  # noqa: F401 - module fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_postgresql_restarted_mid_campaign(cluster, archive, tmp_path):  # noqa: F811
    project, _env = cluster
    params = _parameters(tmp_path)
    reference, ref_settings = _setup(archive, f"sqlite:///{tmp_path / 'reference.sqlite'}", tmp_path / "ref")
    assert not reprocess(reference, ref_settings, campaign="pg", executor="serial", parameters=params).failures

    catalog, _ = _setup(archive, project.url(), tmp_path / "pg")
    settings = Settings(data_dir=tmp_path / "pg", catalog_url=project.url(), pipeline_retries=2)
    holder: dict = {}

    def run():
        try:
            holder["report"] = reprocess(catalog, settings, campaign="pg", executor="serial", parameters=params)
        except Exception as exc:  # the test reports it below
            holder["error"] = exc

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
    assert "error" not in holder, holder.get("error")
    report = holder["report"]
    assert not report.failures, report.failures
    assert _science_rows(catalog, "pg") == _science_rows(reference, "pg")
    with catalog.session() as session:
        statuses = [r.status for r in session.scalars(select(Reduction))]
        attempts = [r.attempts for r in session.scalars(select(Reduction))]
        n_detections = session.scalar(select(func.count()).select_from(Detection))
        n_limits = session.scalar(select(func.count()).select_from(DetectionLimit))
    with reference.session() as session:
        assert n_detections == session.scalar(select(func.count()).select_from(Detection))  # no duplicate rows
        assert n_limits == session.scalar(select(func.count()).select_from(DetectionLimit))
    # no step left running; the interrupted one (when the restart caught a step talking to the
    # database: seen as attempts == 2 on this machine) was retried
    assert "running" not in statuses and "failed" not in statuses, (statuses, attempts)
