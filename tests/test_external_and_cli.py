"""The ``hcdc`` command line end to end (subprocesses, real files), and external cubes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import select

from hcdc.catalog.models import Observation, Product
from hcdc.external import ExternalCube, ExternalCubeError, register_external

from .test_ingest import NIGHT1, make_night

HCDC = [sys.executable, "-m", "hcdc.cli"]


def run(args, env, check=True):
    result = subprocess.run(HCDC + args, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"hcdc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def env(tmp_path, catalog_url):
    environment = dict(os.environ)
    environment.update(HCDC_DATA_DIR=str(tmp_path / "data"), HCDC_CATALOG_URL=catalog_url)
    environment.pop("HCDC_CONFIG", None)
    return environment


def naco_spec(reference_data: Path, **overrides) -> ExternalCube:
    folder = reference_data / "naco_betapic"
    values = dict(
        cube=folder / "naco_betapic_cube.fits",
        angles=folder / "naco_betapic_pa.fits",
        psf=folder / "naco_betapic_psf.fits",
        pixel_scale_arcsec=0.02719,
        instrument="NACO",
        target="beta Pic",
        night=date(2013, 2, 1),
        filter="L_prime",
        release_date=date(2013, 2, 1),
        reference="Absil et al. 2013, A&A 559, L12 (VIP tutorial cube)",
    )
    values.update(overrides)
    return ExternalCube(**values)


def test_register_naco_betapic(reference_data, catalog, tmp_path):
    first = register_external(catalog, naco_spec(reference_data), tmp_path / "data")
    assert first.created and first.n_frames == 61
    assert first.field_rotation_deg == pytest.approx(67.10 + 14.27, abs=0.1)  # SOURCES.md: -14.27 .. +67.10
    again = register_external(catalog, naco_spec(reference_data), tmp_path / "data")
    assert not again.created and again.observation_id == first.observation_id
    with catalog.session() as session:
        observation = session.get(Observation, first.observation_id)
        assert observation.origin == "external" and observation.instrument == "NACO"
        assert observation.target.name == "beta Pic"
        products = session.scalars(select(Product).where(Product.observation_id == observation.id)).all()
        assert {p.kind for p in products} == {"cube", "angles", "psf"}
        for product in products:
            assert Path(product.path).is_file()
            assert (
                fits.getdata(product.path).shape
                == fits.getdata(
                    reference_data
                    / "naco_betapic"
                    / f"naco_betapic_{ {'angles': 'pa'}.get(product.kind, product.kind) }.fits"
                ).shape
            )


def test_external_cube_errors_name_the_file(reference_data, catalog, tmp_path):
    short = tmp_path / "angles_short.fits"
    fits.PrimaryHDU(np.zeros(60, dtype=np.float32)).writeto(short)
    with pytest.raises(ExternalCubeError, match="60 angles for 61 frames") as error:
        register_external(catalog, naco_spec(reference_data, angles=short), tmp_path)
    assert str(short) in str(error.value)
    big_psf = tmp_path / "psf_big.fits"
    fits.PrimaryHDU(np.zeros((201, 201), dtype=np.float32)).writeto(big_psf)
    with pytest.raises(ExternalCubeError, match="does not fit"):
        register_external(catalog, naco_spec(reference_data, psf=big_psf), tmp_path)


def test_cli_ingest_summary_and_tables(tmp_path, env):
    archive = tmp_path / "archive"
    make_night(archive / "n1", NIGHT1, 101, "HIP 65426")
    (archive / "n1" / "broken.fits").write_bytes(b"SIMPLE  =")
    result = run(["ingest", str(archive), "--no-progress"], env)
    assert "13 new" not in result.stderr  # 14 FITS-named files, 13 good
    assert "14 FITS file(s) seen, 14 new" in result.stderr and "1 rejected" in result.stderr
    assert "broken.fits" in result.stderr
    second = run(["ingest", str(archive)], env)
    assert "0 new, 0 changed, 14 unchanged" in second.stderr
    summary = run(["catalog", "summary"], env).stdout
    assert "observations: 1" in summary and "HIP 65426" in summary and "broken.fits" in summary
    listed = run(["catalog", "observations"], env)
    # which catalog a command read, on stderr (after make demo, a plain command reads another catalog)
    assert listed.stderr.count("catalog: ") == 1 and env["HCDC_DATA_DIR"] in listed.stderr
    assert "catalog: " not in listed.stdout
    for fmt, reader in (("csv", "ascii.csv"), ("ecsv", "ascii.ecsv"), ("votable", "votable")):
        out = run(["catalog", "observations", "--format", fmt], env).stdout
        table = Table.read(io.BytesIO(out.encode()) if fmt == "votable" else out, format=reader)
        assert len(table) == 1 and table["n_science_files"][0] == 4
    rejected = Table.read(run(["catalog", "rejected", "--format", "ecsv"], env).stdout, format="ascii.ecsv")
    assert list(rejected["keyword"]) == ["END"]


def test_cli_errors_are_messages_not_tracebacks(tmp_path, env, reference_data):
    bad = run(
        [
            "register-reduced",
            str(reference_data / "naco_betapic" / "naco_betapic_cube.fits"),
            "--angles",
            str(reference_data / "naco_betapic" / "naco_betapic_psf.fits"),
            "--psf",
            str(reference_data / "naco_betapic" / "naco_betapic_psf.fits"),
            "--pixel-scale",
            "0.02719",
            "--instrument",
            "NACO",
            "--target",
            "beta Pic",
            "--date",
            "2013-02-01",
        ],
        env,
        check=False,
    )
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr and "angles for 61 frames" in bad.stderr
    env = dict(env, HCDC_PROPRIETARY_MONTHS="many")
    result = run(["catalog", "summary"], env, check=False)
    assert result.returncode != 0 and "invalid configuration" in result.stderr and "Traceback" not in result.stderr
