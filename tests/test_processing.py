"""Pre-processing catalog observations: products, provenance, calibrations, failures (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import delete, func, select

from hcdc.catalog.models import Calibration, Observation, ObservationCalibration, Product, Reduction
from hcdc.ingest import ingest
from hcdc.processing import preprocess_catalog_observation
from reduction.fitsio_products import read_provenance
from reduction.simulator import simulate_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("proc") / "archive"
    simulate_archive(root, nights=1, seed=9, window=64, ifs=False)
    return root


def test_products_provenance_and_calibrations(archive, catalog, tmp_path):
    ingest(archive / "raw", catalog, programmes=archive / "programmes.ecsv")
    with catalog.session() as session:
        ids = list(session.scalars(select(Observation.id).order_by(Observation.id)))
        # one observation loses its flat links: processed without flat-fielding, and it says so
        session.execute(
            delete(ObservationCalibration).where(
                ObservationCalibration.observation_id == ids[0], ObservationCalibration.role == "flat"
            )
        )
    outcomes = [preprocess_catalog_observation(catalog, i, tmp_path) for i in ids]
    assert [o.status for o in outcomes] == ["done"] * len(ids)
    assert any("no usable FLAT,LAMP files" in p for p in outcomes[0].problems)
    assert not any("FLAT" in p for o in outcomes[1:] for p in o.problems)
    with catalog.session() as session:
        for outcome in outcomes:
            reduction = session.get(Reduction, outcome.reduction_id)
            assert reduction.step == "preprocess" and reduction.status == "done"
            assert reduction.git_commit and len(reduction.environment_sha256) == 64
            assert reduction.parameters["crop_px"] == 201 and reduction.parameters_sha256
            assert all(len(i["sha256"]) == 64 for i in reduction.inputs)
            kinds = {p.kind for p in reduction.products if p.observation_id == outcome.observation_id}
            assert {"cube", "angles", "psf", "frames"} <= kinds
            cube = next(p for p in reduction.products if p.kind == "cube")
            header = fits.getheader(cube.path)
            assert header["HIERARCH HCDC REDUCTION_ID"] == reduction.id
            assert header["HIERARCH HCDC GIT_COMMIT"] == reduction.git_commit[:40]
            # the one header convention: every parameter of the reduction, and the provenance in HISTORY
            assert header["HIERARCH HCDC PARAM CROP_PX"] == reduction.parameters["crop_px"]
            assert header["HIERARCH HCDC STEP_VERSION"] == reduction.step_version
            assert read_provenance(header)["parameters"] == reduction.parameters
            assert cube.meta["n_frames"] == outcome.n_frames
        # reduced calibrations: written once each, with their quality numbers
        calibrations = session.scalars(select(Calibration)).all()
        kinds = {c.kind for c in calibrations}
        assert {"master_dark", "master_background", "master_flat", "bad_pixel_map", "master_sky"} <= kinds
        assert all(Path(session.get(Product, c.product_id).path).is_file() for c in calibrations)
        dark = next(c for c in calibrations if c.kind == "master_dark")
        assert dark.quality["read_noise_adu"] > 0 and dark.night is not None
        n_calibrations = len(calibrations)
    again = preprocess_catalog_observation(catalog, ids[1], tmp_path)
    assert again.status == "done"
    with catalog.session() as session:
        assert session.scalar(select(func.count(Calibration.id))) == n_calibrations  # no duplicates


def test_unreadable_observation_fails_alone_with_its_reason(archive, catalog, tmp_path):
    copy = tmp_path / "archive"
    import shutil

    shutil.copytree(archive / "raw", copy / "raw")
    ingest(copy / "raw", catalog)
    truth = json.loads((archive / "truth.json").read_text())
    victim = truth["observations"][0]
    for name in victim["files"]["science"]:  # every science file truncated after ingest
        path = copy / truth["files"][name]["path"]
        path.write_bytes(path.read_bytes()[:3000])
    with catalog.session() as session:
        ids = list(session.scalars(select(Observation.id).order_by(Observation.id)))
        victim_id = session.scalar(select(Observation.id).where(Observation.ob_id == victim["ob_id"]))
    outcomes = {i: preprocess_catalog_observation(catalog, i, tmp_path / "data") for i in ids}
    assert outcomes[victim_id].status == "failed"
    assert "no readable OBJECT" in outcomes[victim_id].error
    assert all(o.status == "done" for i, o in outcomes.items() if i != victim_id)
    with catalog.session() as session:
        failed = session.get(Reduction, outcomes[victim_id].reduction_id)
        assert failed.status == "failed" and "no readable OBJECT" in failed.error and failed.finished_at


def test_rdi_library_from_the_catalog(archive, catalog, tmp_path):
    """RDI: the library is other targets' calibrated frames with the same instrument, filter, coronagraph."""
    from hcdc.references import reference_library
    from reduction.postproc.rdi import pca_rdi

    ingest(archive / "raw", catalog, programmes=archive / "programmes.ecsv")
    with catalog.session() as session:
        observations = session.scalars(select(Observation).order_by(Observation.id)).all()
        setups = {}
        for obs in observations:
            setups.setdefault((obs.filter, obs.coronagraph), []).append(obs.id)
        shared = next((ids for ids in setups.values() if len(ids) >= 2), None)
        if shared is None:
            pytest.skip("this archive has no two observations with the same set-up")
    for observation_id in shared:
        assert preprocess_catalog_observation(catalog, observation_id, tmp_path).status == "done"
    with catalog.session() as session:
        science = session.get(Observation, shared[0])
        cube_path = session.scalar(
            select(Product.path).where(Product.observation_id == shared[0], Product.kind == "cube")
        )
        angles_path = session.scalar(
            select(Product.path).where(Product.observation_id == shared[0], Product.kind == "angles")
        )
        cube = fits.getdata(cube_path)
        library = reference_library(session, shared[0], frame_shape=cube.shape[-2:])
        assert shared[0] not in library.observation_ids and set(library.observation_ids) <= set(shared[1:])
        for other in library.observation_ids:
            row = session.get(Observation, other)
            assert (row.filter, row.coronagraph, row.instrument) == (
                science.filter,
                science.coronagraph,
                science.instrument,
            )
            assert row.target_id != science.target_id
        assert library.frames.shape[0] == cube.shape[0] and library.frames.shape[-2:] == cube.shape[-2:]
        with pytest.raises(LookupError):
            reference_library(session, shared[0], visible_ids=set())
    result = pca_rdi(cube[0], fits.getdata(angles_path), library.frames[0], ncomp=3)
    assert result.residuals.shape == cube.shape[-2:]
    assert np.isfinite(result.residuals).mean() > 0.9
    # RDI removes most of the stellar halo: the residuals are far below the raw frames
    assert np.nanstd(result.residuals) < 0.5 * np.nanstd(np.median(cube[0], axis=0))
