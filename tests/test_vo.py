"""The public VO service, queried as astronomers do: pyvo (TAP sync and async, cone search, DataLink) and
``stilts taplint`` against a real GAVO DaCHS on its own PostgreSQL, fed by ``hcdc vo publish``.

The catalog is the access tests' world (:mod:`tests.access_world`): programmes A and B under their
proprietary period (observed 40 days ago), C public (three years ago), plus a finished campaign with a
detection, a contrast curve and a residual image per observation. Nothing of A or B may be served, by any
door of the VO service, until their release date passes and ``hcdc vo publish`` runs again.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import select, update

from hcdc.catalog.db import Catalog
from hcdc.catalog.models import (
    CampaignReduction,
    Detection,
    DetectionLimit,
    Observation,
    Product,
    RawFile,
    Reduction,
    SpectrumPoint,
)

from .access_world import build_world
from .hubtest import free_ports
from .synthetic_catalog import add_campaign_results

pyvo = pytest.importorskip("pyvo")

pytestmark = [
    pytest.mark.skipif(shutil.which("dachs") is None, reason="GAVO DaCHS not installed (make system-deps, as root)"),
    pytest.mark.skipif(
        not list(Path("/usr/share/postgresql").glob("*/extension/pg_sphere.control")),
        reason="pgSphere not installed (make system-deps, as root)",
    ),
]


def _hcdc(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hcdc.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _make_public_world(root: Path) -> dict:
    """The access world, a finished campaign over it, and one residual image per campaign reduction."""
    data_dir = root / "world"
    data_dir.mkdir()
    catalog_url = f"sqlite:///{data_dir / 'catalog.sqlite'}"
    catalog = Catalog(catalog_url)
    try:
        world = build_world(catalog, root / "inputs", data_dir)
        add_campaign_results(catalog, data_dir, name="vo-campaign")
        with catalog.session() as session:
            # the synthetic campaign's step under the pipeline's name, and an IFS-like spectrum per detection
            session.execute(update(Reduction).where(Reduction.campaign_id.is_not(None)).values(step="postprocess"))
            for detection in session.scalars(
                select(Detection).join(CampaignReduction, CampaignReduction.reduction_id == Detection.reduction_id)
            ):
                detection.spectrum = [
                    SpectrumPoint(wavelength_um=w, contrast=2e-5 * w, contrast_err=3e-6, snr=6.0)
                    for w in (1.0, 1.2, 1.6)
                ]
            reductions = session.scalars(
                select(Reduction).join(CampaignReduction, CampaignReduction.reduction_id == Reduction.id)
            ).all()
            for reduction in reductions:
                path = data_dir / "products" / f"campaign-obs{reduction.observation_id}" / "residuals.fits"
                path.parent.mkdir(parents=True, exist_ok=True)
                fits.PrimaryHDU(np.arange(64, dtype=np.float32).reshape(8, 8) * reduction.id).writeto(path)
                data = path.read_bytes()
                session.add(
                    Product(
                        reduction_id=reduction.id,
                        observation_id=reduction.observation_id,
                        kind="residuals",
                        path=str(path),
                        sha256=hashlib.sha256(data).hexdigest(),
                        size_bytes=len(data),
                        release_date=reduction.release_date,
                        meta={"wavelength_um": 2.11},
                    )
                )
    finally:
        catalog.dispose()
    return {"world": world, "catalog_url": catalog_url, "data_dir": data_dir}


def _release_programme(catalog_url: str, observation_id: int, day: date) -> None:
    """The proprietary period of one observation ends on ``day`` (as when a PI waives it), for it and
    everything derived from it."""
    catalog = Catalog(catalog_url)
    try:
        with catalog.session() as session:
            session.execute(update(Observation).where(Observation.id == observation_id).values(release_date=day))
            for model in (RawFile, Reduction, Product, Detection, DetectionLimit):
                session.execute(update(model).where(model.observation_id == observation_id).values(release_date=day))
    finally:
        catalog.dispose()


@pytest.fixture(scope="module")
def vo():
    """A published, running VO service on free ports; yields what the tests need; stops it."""
    root = Path(tempfile.mkdtemp(prefix="hcdc-vo-"))
    os.chmod(root, 0o755)  # the service account must reach its data directory
    built = _make_public_world(root)
    if os.geteuid() == 0:  # the platform's files are the service account's (as hcdc ingest would leave them)
        from hcdc.accounts import ensure_service_account, make_private_tree

        owner, _ = ensure_service_account()
        make_private_tree(root / "world", owner)
        make_private_tree(root / "inputs", owner)
    http_port, pg_port = free_ports(2)
    env = dict(
        os.environ,
        HCDC_DATA_DIR=str(root / "vo-data"),
        HCDC_CATALOG_URL=built["catalog_url"],
        HCDC_VO_PORT=str(http_port),
        HCDC_VO_PG_PORT=str(pg_port),
        HCDC_VO_MAX_ROWS="50",  # small, so that the row limit shows (taplint's upload test sends 23 rows)
    )
    started = time.monotonic()
    published = _hcdc(env, "vo", "publish")
    assert published.returncode == 0, published.stderr
    setup_seconds = time.monotonic() - started
    server = subprocess.Popen(
        [sys.executable, "-m", "hcdc.cli", "vo", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/tap/availability", timeout=5) as answer:
                if b"true" in answer.read():
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"the VO server did not come up: {server.stdout.read()[-3000:]}")
        time.sleep(0.5)
    try:
        yield {
            **built,
            "root": root,
            "env": env,
            "base": base,
            "tap": pyvo.dal.TAPService(f"{base}/tap"),
            "publish_output": published.stderr,
            "setup_seconds": setup_seconds,
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        stopped = _hcdc(env, "vo", "stop")  # the VO's own PostgreSQL
        shutil.rmtree(root, ignore_errors=True)
        assert stopped.returncode == 0 and "stopped PostgreSQL" in stopped.stderr, stopped.stderr


def _cli_table(vo, *args: str) -> Table:
    """What ``hcdc catalog ... --format votable`` prints, as a table."""
    done = _hcdc({**vo["env"]}, "catalog", *args, "--format", "votable")
    assert done.returncode == 0, done.stderr
    return Table.read(io.BytesIO(done.stdout.encode()), format="votable")


def _same_value(served, expected) -> bool:
    if np.ma.is_masked(expected) or expected is None or (isinstance(expected, str) and expected == ""):
        return np.ma.is_masked(served) or served is None or served == "" or served == -1
    if isinstance(expected, float | np.floating):
        return float(served) == float(expected) or (np.isnan(float(served)) and np.isnan(float(expected)))
    return str(served) == str(expected)


def _assert_rows_match(served: Table, expected: Table, key: tuple[str, ...]) -> None:
    """Every row of ``expected`` is served with the same values in every column (and no other row)."""
    index = {tuple(str(row[k]) for k in key): row for row in served}
    assert len(served) == len(expected), (len(served), len(expected))
    from hcdc.vo import ADQL_RENAMES

    for row in expected:
        got = index[tuple(str(row[k]) for k in key)]
        for name in expected.colnames:
            served_name = ADQL_RENAMES.get(name, name)
            assert _same_value(got[served_name], row[name]), (name, got[served_name], row[name])


def test_only_released_rows_are_served_with_the_values_of_the_catalog_commands(vo):
    world = vo["world"]
    tap = vo["tap"]
    served = tap.run_sync("SELECT * FROM hcdc.observations").to_table()
    assert sorted(served["observation"]) == [world.key["C"]]
    cli = _cli_table(vo, "observations")
    released = cli[cli["observation"] == world.key["C"]]
    _assert_rows_match(served, released, ("observation",))

    detections = tap.run_sync("SELECT * FROM hcdc.detections").to_table()
    cli = _cli_table(vo, "detections")
    _assert_rows_match(detections, cli[cli["observation"] == world.observation["C"]], ("detection",))
    assert len(detections) >= 1

    limits = tap.run_sync("SELECT * FROM hcdc.detection_limits", maxrec=1000).to_table()
    cli = _cli_table(vo, "limits")
    _assert_rows_match(limits, cli[cli["observation"] == world.observation["C"]], ("curve", "sep_arcsec"))
    assert len(limits) >= 5

    spectra = tap.run_sync("SELECT * FROM hcdc.spectra", maxrec=1000).to_table()
    cli = _cli_table(vo, "spectra")
    _assert_rows_match(spectra, cli[cli["observation"] == world.observation["C"]], ("detection", "wavelength_um"))
    assert len(spectra) == 3

    # nothing of the proprietary programmes, in any table, by id, key or name
    for letter in ("A", "B"):
        key, obs_id, target = world.key[letter], world.observation[letter], world.target[letter]
        assert not len(tap.run_sync(f"SELECT * FROM hcdc.observations WHERE observation = '{key}'").to_table())
        for table in ("detections", "detection_limits", "spectra", "products"):
            rows = tap.run_sync(f"SELECT * FROM hcdc.{table} WHERE observation = {obs_id}").to_table()
            assert not len(rows), (table, letter)
        assert not len(tap.run_sync(f"SELECT * FROM hcdc.targets WHERE target = '{target}'").to_table())
        assert not len(tap.run_sync(f"SELECT * FROM ivoa.obscore WHERE obs_id = '{key}'").to_table())


def test_async_queries_give_the_sync_answer_and_jobs_carry_a_destruction_time(vo):
    tap = vo["tap"]
    query = "SELECT detection, sep_arcsec, pa_deg, contrast, snr FROM hcdc.detections ORDER BY detection"
    job = tap.submit_job(query)
    try:
        job.run()
        job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=120)
        assert job.phase == "COMPLETED", job.phase
        asynchronous = job.fetch_result().to_table()
        destruction = job.destruction
    finally:
        job.delete()
    synchronous = tap.run_sync(query).to_table()
    assert list(asynchronous["detection"]) == list(synchronous["detection"])
    assert np.array_equal(asynchronous["sep_arcsec"], synchronous["sep_arcsec"])
    # retention: the default lifetime of the settings (2 days), not forever
    remaining = (destruction.datetime - __import__("datetime").datetime.utcnow()).total_seconds()
    assert 0 < remaining <= 172_800 + 60, remaining


def test_malformed_adql_gets_the_vo_error_document_and_the_row_limit_holds(vo):
    tap = vo["tap"]
    with pytest.raises(pyvo.dal.DALQueryError) as raised:
        tap.run_sync("SELEKT * FROM hcdc.observations")
    assert "Traceback" not in str(raised.value)
    url = f"{vo['base']}/tap/sync?REQUEST=doQuery&LANG=ADQL&QUERY=" + urllib.request.quote("SELECT nonsense FROM x y z")
    try:
        body = urllib.request.urlopen(url, timeout=30).read().decode()
    except urllib.error.HTTPError as error:  # DaCHS answers 400 with the error VOTable
        body = error.read().decode()
    assert 'name="QUERY_STATUS" value="ERROR"' in body and "Traceback" not in body, body[:500]
    # HCDC_VO_MAX_ROWS=50: a query without MAXREC gets 50 rows and the overflow mark
    with pytest.warns(pyvo.dal.DALOverflowWarning):
        limited = tap.run_sync("SELECT * FROM TAP_SCHEMA.columns")
    assert len(limited) == 50 and limited.query_status == "OVERFLOW"


def test_cone_search_finds_a_released_target_only(vo):
    world = vo["world"]
    cone = pyvo.dal.SCSService(f"{vo['base']}/hcdc/q/cone/scs.xml")
    targets = vo["tap"].run_sync("SELECT target, ra_deg, dec_deg FROM hcdc.targets").to_table()
    assert list(targets["target"]) == [world.target["C"]]
    ra, dec = float(targets["ra_deg"][0]), float(targets["dec_deg"][0])
    found = cone.search(pos=(ra, dec), radius=0.01).to_table()
    assert world.target["C"] in list(found["target"])
    # the proprietary targets' positions give nothing, though the catalog has them
    catalog = Catalog(vo["catalog_url"], migrate=False)
    try:
        with catalog.session() as session:
            for letter in ("A", "B"):
                obs = session.get(Observation, world.observation[letter])
                if obs.target is not None and obs.target.ra_deg is not None:
                    hidden = cone.search(pos=(obs.target.ra_deg, obs.target.dec_deg), radius=0.01).to_table()
                    assert world.target[letter] not in list(hidden["target"])
    finally:
        catalog.dispose()


def test_an_obscore_row_downloads_its_product_through_datalink_with_the_catalog_sha256(vo):
    rows = vo["tap"].run_sync("SELECT * FROM ivoa.obscore").to_table()
    assert len(rows) >= 1 and set(rows["obs_id"]) == {vo["world"].key["C"]}
    row = rows[0]
    assert row["access_format"] == "application/x-votable+xml;content=datalink"
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(str(row["access_url"]))
    this = [link for link in links if link["semantics"] == "#this"]
    assert len(this) == 1, [link["semantics"] for link in links]
    assert not str(this[0]["error_message"]).strip(), this[0]["error_message"]
    data = urllib.request.urlopen(str(this[0]["access_url"]), timeout=30).read()
    served = (
        vo["tap"]
        .run_sync(f"SELECT sha256, product FROM hcdc.products WHERE obs_publisher_did = '{row['obs_publisher_did']}'")
        .to_table()
    )
    catalog = Catalog(vo["catalog_url"], migrate=False)
    try:
        with catalog.session() as session:
            product = session.get(Product, int(served["product"][0]))
            assert hashlib.sha256(data).hexdigest() == product.sha256 == served["sha256"][0]
    finally:
        catalog.dispose()
    # an identifier that is not (or no longer) published gets a DataLink error, not a file
    forged = str(row["access_url"]).replace("product%2F", "product%2F9999")
    answer = pyvo.dal.adhoc.DatalinkResults.from_result_url(forged)
    assert len(answer) and all(str(link["error_message"]).strip() for link in answer)


def test_taplint_reports_no_errors(vo):
    if shutil.which("stilts") is None:
        pytest.skip("stilts not installed (Debian package stilts; make system-deps)")
    done = subprocess.run(
        ["stilts", "taplint", f"tapurl={vo['base']}/tap", "report=EWS"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = [line for line in done.stdout.splitlines() if line.startswith("Totals:")]
    errors = [line for line in done.stdout.splitlines() if line.startswith("E-")]
    assert summary, done.stdout[-2000:] + done.stderr[-2000:]
    assert not errors, "\n".join(errors[:20])


def test_a_local_account_gets_nothing_more_than_the_public_service_gives(vo):
    """As another OS account (a PI's kernel could do the same): the VO's database refuses every role without
    its password, its files are closed, the file service serves published files only, ADQL reaches declared
    tables only."""
    from hcdc.pgcluster import passwordless_probe

    from .isolation.attacker import Attacker, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    root = vo["root"] / "vo-data" / "vo"
    pg_port = vo["env"]["HCDC_VO_PG_PORT"]
    attacker = Attacker()
    try:
        for role in ("gavoadmin", "gavo", "untrusted", "postgres", "hcdc"):
            lines = passwordless_probe(
                f"postgresql+psycopg://{role}@127.0.0.1:{pg_port}/gavo", attacker.name, sys.executable
            )
            assert lines and not any(line.startswith("CONNECTED") for line in lines), lines
        secrets = [root / "etc" / "feed", root / "etc" / "untrustedquery", root / "postgres" / "pgpass", root / "etc"]
        published = sorted((root / "inputs" / "hcdc" / "products").iterdir())
        result = attacker.run(
            "import os\n"
            "R['read'] = []\n"
            "for path in P['paths']:\n"
            "    try:\n"
            "        (os.listdir if os.path.isdir(path) else (lambda p: open(p, 'rb').read(1)))(path)\n"
            "        R['read'].append(path)\n"
            "    except OSError:\n"
            "        pass\n",
            {"paths": [str(p) for p in secrets + published]},
        )
        assert result["read"] == [], result
    finally:
        attacker.remove()
    # the file service: published files only, no way out of its folder
    base = f"{vo['base']}/hcdc/q/dl/static"
    for forged in ("../q.rd", "..%2Fq.rd", "../../../etc/feed", "%2e%2e/%2e%2e/%2e%2e/etc/feed", "nonexistent.fits"):
        try:
            answer = urllib.request.urlopen(f"{base}/{forged}", timeout=10)
            body = answer.read()
            assert b"password" not in body and b"<resource" not in body, forged
        except urllib.error.HTTPError as error:
            assert error.code in (403, 404), (forged, error.code)
    served = {p.name for p in published}
    catalog = Catalog(vo["catalog_url"], migrate=False)
    try:
        with catalog.session() as session:
            for product in session.scalars(select(Product)):
                released_now = product.release_date is not None and product.release_date <= date.today()
                if not released_now:  # a proprietary product's would-be file name is not there
                    assert not any(name.startswith(product.sha256) for name in served), product.id
    finally:
        catalog.dispose()
    # ADQL reaches the declared tables only: DaCHS' own tables and PostgreSQL's catalogs are refused
    for query in ("SELECT * FROM dc.products", "SELECT * FROM pg_catalog.pg_authid", "SELECT * FROM pg_shadow"):
        with pytest.raises(pyvo.dal.DALQueryError):
            vo["tap"].run_sync(query)


def test_a_release_date_passing_then_publish_adds_exactly_the_released_rows(vo):
    """Last in this module: it changes the catalog and the served tables."""
    world, tap, env = vo["world"], vo["tap"], vo["env"]
    before = {
        t: tap.run_sync(f"SELECT * FROM hcdc.{t}", maxrec=10_000).to_table() for t in ("observations", "detections")
    }
    again = _hcdc(env, "vo", "publish")
    assert again.returncode == 0, again.stderr
    assert " 0 added, 0 updated, 0 withdrawn" in again.stderr and "added, 0 updated" in again.stderr
    for line in again.stderr.splitlines():
        if line.strip().startswith("hcdc."):
            assert " 0 added, 0 updated, 0 withdrawn" in line, line  # idempotent

    _release_programme(vo["catalog_url"], world.observation["A"], date.today() - timedelta(days=1))
    released = _hcdc(env, "vo", "publish")
    assert released.returncode == 0, released.stderr
    lines = {line.split()[0]: line for line in released.stderr.splitlines() if line.strip().startswith("hcdc.")}
    assert "1 added, 0 updated, 0 withdrawn" in lines["hcdc.observations"], lines
    assert "1 added, 0 updated, 0 withdrawn" in lines["hcdc.targets"], lines
    assert " 0 updated, 0 withdrawn" in lines["hcdc.detections"] and "0 added" not in lines["hcdc.detections"]
    observations = tap.run_sync("SELECT observation FROM hcdc.observations").to_table()
    assert sorted(observations["observation"]) == sorted([world.key["A"], world.key["C"]])
    assert len(tap.run_sync(f"SELECT * FROM ivoa.obscore WHERE obs_id = '{world.key['A']}'").to_table()) >= 1
    assert not len(tap.run_sync(f"SELECT * FROM hcdc.observations WHERE observation = '{world.key['B']}'").to_table())
    # C's rows were not touched
    after = tap.run_sync("SELECT * FROM hcdc.detections", maxrec=10_000).to_table()
    _assert_rows_match(after[after["observation"] == world.observation["C"]], before["detections"], ("detection",))
