"""hcdc_widgets driven programmatically, against the real catalog service run in-process.

The service (``hcdc.service.make_app``) runs on 127.0.0.1 in a thread with a
real ``HubAuth`` that checks every token against a stub of the hub's
``/hub/api/user`` endpoint (known tokens → user models with the service scope,
anything else → 403, as the hub answers for an expired token). The catalog is
``tests/access_world.py`` plus a calibrated NACO β Pic cube (cropped, recentred)
for alice's proprietary observation, so the panel runs the real post-processing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from sqlalchemy import select

from hcdc.client import BadRequest, CatalogClient, PermissionDenied
from reduction.postproc import pipeline
from reduction.postproc.pipeline import PostprocessParameters, PsfSubtractionParameters
from reduction.steps import StepParameters

from .access_world import build_world, done_reduction
from .conftest import reference_data_dir
from .hubstub import SCOPE, TOKENS, hub_user_handler

PIXEL_SCALE = 0.02719
STAR_FLUX = 764939.6  # 1xFWHM aperture flux of the star (VIP tutorial starphot)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def naco_small():
    """The NACO β Pic cube cropped to 61×61 px around the star and recentred (the pre-processing's output)."""
    folder = reference_data_dir()
    if folder is None or not (folder / "naco_betapic" / "naco_betapic_cube.fits").is_file():
        pytest.skip("NACO β Pic reference cube not found (set HCDC_REFERENCE_DATA)")
    from reduction.postproc import normalize_psf
    from reduction.postproc.recenter import recenter_cube

    d = folder / "naco_betapic"
    cube = fits.getdata(d / "naco_betapic_cube.fits").astype(float)[:, 20:81, 20:81]
    angles = fits.getdata(d / "naco_betapic_pa.fits").astype(float).ravel()
    psf = fits.getdata(d / "naco_betapic_psf.fits").astype(float)
    cube = recenter_cube(cube, normalize_psf(psf, size=19).fwhm, negative=True, subi_size=5).cube
    return cube, angles, psf


def _add_calibrated(catalog, observation_id: int, folder: Path, cube, angles, psf) -> dict[str, int]:
    from hcdc.catalog.models import Observation, Product

    folder.mkdir(parents=True, exist_ok=True)
    ids = {}
    with catalog.session() as session:
        observation = session.get(Observation, observation_id)
        reduction = done_reduction(session, observation, "preprocess")
        for kind, data in (("cube", cube), ("angles", angles), ("psf", psf)):
            path = folder / f"{kind}.fits"
            fits.PrimaryHDU(np.asarray(data, dtype=np.float32)).writeto(path, overwrite=True)
            content = path.read_bytes()
            meta = (
                {"pixel_scale_arcsec": PIXEL_SCALE, "star_flux": [STAR_FLUX], "wavelengths_um": [3.8]}
                if kind == "cube"
                else None
            )
            product = Product(
                reduction_id=reduction.id,
                observation_id=observation_id,
                kind=kind,
                path=str(path),
                sha256=hashlib.sha256(content).hexdigest(),
                size_bytes=len(content),
                meta=meta,
                release_date=observation.release_date,
            )
            session.add(product)
            session.flush()
            ids[kind] = product.id
    return ids


class Service:
    def __init__(self, url, catalog, world, calibrated, data_dir):
        self.url, self.catalog, self.world, self.calibrated, self.data_dir = url, catalog, world, calibrated, data_dir

    def client(self, user: str) -> CatalogClient:
        token = next((t for t, u in TOKENS.items() if u == user), user)
        return CatalogClient(self.url, token=token)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from jupyterhub.services.auth import HubAuth
    from tornado import web

    from hcdc.catalog import Catalog
    from hcdc.service import CatalogAccess, make_app

    cube, angles, psf = naco_small()
    root = tmp_path_factory.mktemp("widgets")
    data_dir = root / "data"
    data_dir.mkdir()
    catalog = Catalog(f"sqlite:///{data_dir / 'catalog.sqlite'}")
    world = build_world(catalog, root, data_dir)
    calibrated = _add_calibrated(catalog, world.observation["A"], data_dir / "products" / "calA", cube, angles, psf)

    hub_port, port = _port(), _port()
    ready, holder = threading.Event(), {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        holder["loop"] = loop
        hub_auth = HubAuth(
            api_url=f"http://127.0.0.1:{hub_port}/hub/api",
            api_token="service-token",
            access_scopes={SCOPE},
            cache_max_age=0,
        )
        web.Application([(r"/hub/api/user", hub_user_handler())]).listen(hub_port, "127.0.0.1")
        make_app(CatalogAccess(catalog, data_dir=data_dir), "/services/hcdc-catalog/", hub_auth=hub_auth).listen(
            port, "127.0.0.1"
        )
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield Service(f"http://127.0.0.1:{port}/services/hcdc-catalog/", catalog, world, calibrated, data_dir)
    holder["loop"].call_soon_threadsafe(holder["loop"].stop)
    thread.join(5)
    catalog.dispose()


def _no_traceback(panel) -> None:
    text = panel.status.value + panel.table.value
    assert "Traceback" not in text and 'File "' not in text
    assert "\n" not in panel.message


# --- the parameter form ----------------------------------------------------------------------


def test_form_builds_the_parameter_object_from_the_dataclass():
    from dataclasses import dataclass

    from hcdc_widgets import ParameterForm

    form = ParameterForm(PostprocessParameters)
    assert form.value == PostprocessParameters()
    assert set(form.subforms) == {"subtraction", "detection", "characterisation", "contrast", "statistical"}
    assert form.widget("subtraction.algorithm").options == (
        "pca",
        "annular-pca",
        "cadi",
        "rdi",
        "ardi",
        "andromeda",
        "paco",
    )
    form.set(
        subtraction__algorithm="annular-pca",
        subtraction__ncomp=7,
        subtraction__mask_center_px=3.5,
        detection__threshold=4.0,
        contrast__student=False,
        recenter=True,
    )
    expected = PostprocessParameters(
        subtraction=PsfSubtractionParameters(algorithm="annular-pca", ncomp=7, mask_center_px=3.5),
        detection=pipeline.DetectionParameters(threshold=4.0),
        contrast=pipeline.ContrastCurveParameters(student=False),
        recenter=True,
    )
    assert form.value == expected
    assert PostprocessParameters.from_dict(form.value.to_dict()) == expected
    form.set(subtraction__mask_center_px="")  # empty optional -> None
    assert form.value.subtraction.mask_center_px is None
    form.value = PostprocessParameters()  # and back
    assert form.value == PostprocessParameters()

    @dataclass(frozen=True)
    class NewStepParameters(StepParameters):  # a field added to a step appears without widget code
        gain: float = 1.5
        iterations: int = 3
        optional_radius: float | None = None

    extra = ParameterForm(NewStepParameters).set(gain=2.0, optional_radius="4")
    assert set(extra.fields) == {"gain", "iterations", "optional_radius"}
    assert extra.value == NewStepParameters(gain=2.0, optional_radius=4.0)
    extra.set(optional_radius="four")
    with pytest.raises(ValueError, match="optional radius must be a float or empty"):
        extra.value  # noqa: B018


# --- a PI's session against the real service ------------------------------------------------------


def test_pi_runs_saves_and_exports_her_reduction(service, tmp_path, monkeypatch):
    from hcdc.catalog.models import Detection, DetectionLimit, Product, Reduction, User
    from hcdc_widgets import ReductionPanel

    world = service.world
    panel = ReductionPanel(client=service.client("alice"), export_dir=tmp_path)
    # my observations only, with their conditions
    assert [value for _label, value in panel.observation.options] == [world.observation["A"]]
    assert "seeing" in panel.table.value and world.target["A"] in panel.table.value
    assert world.target["B"] not in panel.table.value
    panel.load()
    assert "loaded" in panel.message, panel.message
    assert panel.frame.max == 60 and {w.value.count('data-plot="frame"') for w in panel.inputs_view.children[:1]} == {1}

    calls = []
    real = pipeline.postprocess

    def spy(*args, **kwargs):
        calls.append(kwargs["params"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "postprocess", spy)
    panel.form.set(
        subtraction__ncomp=10, characterisation__ncomp=10, characterisation__n_injections=0, max_characterised=1
    )
    params = panel.form.value
    t0 = time.perf_counter()
    panel.run()
    seconds = time.perf_counter() - t0
    print(f"\nrun -> result on NACO β Pic (61 frames, 61x61 px, PCA 10 + NEGFC + contrast curve): {seconds:.1f} s")
    assert "run finished" in panel.message, panel.message
    assert calls == [params] and calls[0] is not None  # the batch's function, the form's object
    plotted = " ".join(w.value for w in panel.results_view.children)
    for name in ("residuals", "snrmap", "contrast"):
        assert f'data-plot="{name}"' in plotted
    assert panel.progress.value == 100
    # β Pic b: about 16.6 px from the star, S/N ~ 10
    assert panel.candidate.options
    first = panel.session.candidate(0)
    assert 15 < first["sep_px"] < 18.5 and first["snr"] > 5
    assert "NEGFC" in panel.candidate_info.value
    panel.characterise()  # NEGFC on request
    assert "NEGFC flux" in panel.candidate_info.value and "contrast" in panel.candidate_info.value

    saved = panel.save()
    assert saved and "saved as your reduction" in panel.message, panel.message
    with service.catalog.session() as session:
        reduction = session.get(Reduction, saved["reduction_id"])
        alice = session.scalar(select(User).where(User.username == "alice"))
        assert reduction.owner_id == alice.id and reduction.step == "postprocess-interactive"
        assert reduction.status == "done" and reduction.parameters == params.to_dict()
        assert reduction.parameters_sha256 == params.fingerprint()
        assert {i["product_id"] for i in reduction.inputs} == set(service.calibrated.values())
        with_sha = {
            p.id: p.sha256 for p in session.scalars(select(Product).where(Product.id.in_(service.calibrated.values())))
        }
        assert all(i["sha256"] == with_sha[i["product_id"]] for i in reduction.inputs)
        assert reduction.code_version and reduction.started_at and reduction.finished_at
        release = world.release["A"]
        assert reduction.release_date == release
        detections = session.scalars(select(Detection).where(Detection.reduction_id == reduction.id)).all()
        limits = session.scalars(select(DetectionLimit).where(DetectionLimit.reduction_id == reduction.id)).all()
        assert len(detections) == len(panel.candidate.options) >= 1
        assert {d.release_date for d in detections} == {release}
        assert detections[0].contrast and 0.4 < detections[0].sep_arcsec < 0.5
        assert len(limits) == 1 and len(limits[0].points) > 3 and limits[0].release_date == release
        products = session.scalars(select(Product).where(Product.reduction_id == reduction.id)).all()
        assert {p.kind for p in products} == {"residuals", "snrmap"}
        assert all(p.release_date == release and Path(p.path).is_file() for p in products)
    # alice sees her saved detections through the service; bob does not
    assert any(
        d["reduction_id"] == saved["reduction_id"] for d in service.client("alice").detections(world.observation["A"])
    )
    with pytest.raises(PermissionDenied):
        service.client("bob").detections(world.observation["A"])

    job = panel.export()
    assert job and Path(job["path"]).is_file()
    on_disk = yaml.safe_load(Path(job["path"]).read_text())
    assert on_disk["step"] == "postprocess" and on_disk["observation_id"] == world.observation["A"]
    assert PostprocessParameters.from_dict(json.loads(on_disk["parameters"])) == params
    command = shlex.split(on_disk["command"])
    assert command[:4] == ["papermill", "-k", "hcdc", "notebooks/pipeline/postprocess.py"]
    assert command[command.index("observation_id") + 1] == str(world.observation["A"])
    assert PostprocessParameters.from_dict(json.loads(command[command.index("parameters") + 1])) == params
    _no_traceback(panel)


# --- refusals: one clear line, never a traceback ------------------------------------------------------


def test_refusals_are_one_line_messages(service, tmp_path):
    from hcdc_widgets import ReductionPanel

    world = service.world
    # another PI's proprietary observation: 403
    bob = ReductionPanel(client=service.client("bob"), export_dir=tmp_path)
    bob.load(world.observation["A"])
    assert bob.message.startswith("PermissionDenied (403)") and "proprietary" in bob.message
    _no_traceback(bob)
    # a nonexistent observation: 404
    bob.load(987654)
    assert bob.message.startswith("NotFound (404)") and "observation 987654 does not exist" in bob.message
    _no_traceback(bob)
    # my observation without a calibrated cube yet
    bob.load(world.observation["B"])
    assert "no calibrated cube yet" in bob.message
    # run / save before loading
    bob.run()
    assert "load an observation first" in bob.message
    # an expired (or invalid) hub token: 401
    expired = ReductionPanel(client=service.client("expired-token"), export_dir=tmp_path)
    assert expired.message.startswith("AuthenticationError (401)") and "expired" in expired.message
    assert expired.observation.options == ()
    _no_traceback(expired)
    # a user without a programme: an empty table with the reason
    nobody = ReductionPanel(client=service.client("nobody"), export_dir=tmp_path)
    assert nobody.observation.options == ()
    assert "not PI or co-I of any programme" in nobody.table.value
    assert "not PI or co-I of any programme" in nobody.message
    _no_traceback(nobody)
    # bad parameters typed in the form
    alice = ReductionPanel(client=service.client("alice"), export_dir=tmp_path)
    alice.form.set(subtraction__mask_center_px="wide")
    alice.run()
    assert alice.message.startswith("invalid input:") and "mask center px" in alice.message
    _no_traceback(alice)
    # no service configured (a kernel not started by the hub)
    import os

    saved_env = {k: os.environ.pop(k, None) for k in ("HCDC_SERVICE_URL",)}
    try:
        lost = ReductionPanel(export_dir=tmp_path)
        assert lost.message.startswith("ConfigurationError") and "HCDC_SERVICE_URL" in lost.message
    finally:
        os.environ.update({k: v for k, v in saved_env.items() if v is not None})


def test_saving_is_enforced_by_the_service(service):
    """Nobody saves into an observation that is not theirs, whatever the kernel sends."""
    world = service.world
    alice = service.client("alice")
    info = alice.calibrated(world.observation["A"])
    payload = {
        "parameters": PostprocessParameters().to_dict(),
        "inputs": [{"product_id": p["id"], "sha256": p["sha256"]} for p in info["products"].values()],
        "detections": [],
        "limits": [],
    }
    with pytest.raises(PermissionDenied, match="proprietary"):
        service.client("bob").save_reduction(world.observation["A"], payload)
    # public observation of carol's programme: visible to alice, but not hers to save into
    with pytest.raises(PermissionDenied, match="not PI or co-I of programme"):
        alice.save_reduction(world.observation["C"], payload)
    with pytest.raises(PermissionDenied, match="unknown to the catalog"):
        service.client("nobody").save_reduction(world.observation["C"], payload)
    # inputs must be the catalog's products of this observation, unchanged
    tampered = dict(payload, inputs=[dict(i, sha256="0" * 64) for i in payload["inputs"]])
    with pytest.raises(BadRequest, match="does not match the catalog"):
        alice.save_reduction(world.observation["A"], tampered)
    foreign = dict(payload, inputs=payload["inputs"] + [{"product_id": world.product["B"], "sha256": "x"}])
    with pytest.raises(BadRequest, match="is not a product of observation"):
        alice.save_reduction(world.observation["A"], foreign)
    with pytest.raises(BadRequest, match="invalid post-processing parameters"):
        alice.save_reduction(world.observation["A"], dict(payload, parameters={"subtraction": {"ncmp": 3}}))


def _detection_with_spectrum(catalog, observation_id: int, contrasts) -> int:
    """A campaign-like reduction of ``observation_id`` with one detection and its spectrum (3 channels)."""
    from hcdc.catalog.models import Detection, Observation, SpectrumPoint

    with catalog.session() as session:
        observation = session.get(Observation, observation_id)
        reduction = done_reduction(session, observation, "postprocess-spectral")
        detection = Detection(
            reduction_id=reduction.id,
            observation_id=observation_id,
            x_px=40.0,
            y_px=30.0,
            sep_arcsec=0.27,
            pa_deg=55.0,
            snr=12.0,
            contrast=float(np.mean(contrasts)),
            release_date=observation.release_date,
        )
        session.add(detection)
        session.flush()
        for wavelength, contrast in zip((1.0, 1.2, 1.6), contrasts):
            session.add(
                SpectrumPoint(
                    detection_id=detection.id,
                    wavelength_um=wavelength,
                    contrast=contrast,
                    contrast_err=0.1 * contrast,
                    snr=10.0,
                )
            )
        return detection.id


def test_the_panel_plots_the_catalog_spectra_of_my_observation(service, tmp_path):
    """Loading an observation shows its detections' spectra as the service gives them to me (issue 19):
    a line when there is none, a plot (contrast per channel with 1-sigma whiskers) of the newest reduction's
    when there is; alice cannot load bob's observation to see his, nor bob hers."""
    from hcdc.catalog.models import Detection, SpectrumPoint
    from hcdc_widgets import ReductionPanel

    world = service.world
    panel = ReductionPanel(client=service.client("alice"), export_dir=tmp_path)
    mine = _detection_with_spectrum(service.catalog, world.observation["A"], (1.1e-5, 1.3e-5, 0.6e-5))
    _detection_with_spectrum(service.catalog, world.observation["B"], (2e-4, 2e-4, 2e-4))
    panel.load(world.observation["A"])
    assert "loaded" in panel.message, panel.message
    detections, rows = panel.session.catalog_spectra()
    # the newest reduction's spectra only (the world's older detections of A have spectra too)
    assert [d["id"] for d in detections] == [mine] and len(rows) == 3
    assert [r["contrast"] for r in rows] == pytest.approx([1.1e-5, 1.3e-5, 0.6e-5])
    assert 'data-plot="spectra"' in panel.spectra_view.value and "0.270" in panel.spectra_view.value
    # bob's observation B (with its spectrum) cannot be loaded into alice's panel: the refusal is one line
    # and the panel no longer shows the spectra of the observation loaded before
    panel.load(world.observation["B"])
    assert panel.message.startswith("PermissionDenied"), panel.message
    assert panel.spectra_view.value == ""
    # and bob's panel gets nothing of alice's
    intruder = ReductionPanel(client=service.client("bob"), export_dir=tmp_path)
    intruder.load(world.observation["A"])
    assert intruder.message.startswith("PermissionDenied"), intruder.message
    assert 'data-plot="spectra"' not in intruder.spectra_view.value
    # an observation whose detections have no spectrum (IRDIS, NACO): one line instead of an empty plot
    with service.catalog.session() as session:
        ids = select(Detection.id).where(Detection.observation_id == world.observation["A"])
        session.execute(SpectrumPoint.__table__.delete().where(SpectrumPoint.detection_id.in_(ids)))
    panel.load(world.observation["A"])
    assert "No spectrum in the catalog" in panel.spectra_view.value
    _no_traceback(panel)


def test_starter_notebooks_are_installed_once_and_not_through_symlinks(tmp_path):
    import logging
    import os
    import pwd
    from types import SimpleNamespace

    import nbformat

    from hcdc.hub_extensions import TUTORIALS, HCDCSystemUserSpawner

    me = pwd.getpwuid(os.getuid())
    home = tmp_path / "home"
    home.mkdir()
    account = pwd.struct_passwd((me.pw_name, "x", me.pw_uid, me.pw_gid, "", str(home), "/bin/sh"))
    spawner = SimpleNamespace(
        starter_files=[str(TUTORIALS / "reduction_panel.py"), str(TUTORIALS / "PI_GUIDE.md")],
        starter_folder="hcdc-tutorials",
        log=logging.getLogger("test"),
        user=SimpleNamespace(name="alice"),
    )
    written = HCDCSystemUserSpawner._install_starters(spawner, account)
    assert sorted(p.name for p in written) == ["PI_GUIDE.md", "reduction_panel.ipynb"]
    notebook = nbformat.read(home / "hcdc-tutorials" / "reduction_panel.ipynb", as_version=4)
    assert notebook.metadata.kernelspec.name == "hcdc" and "jupytext" not in notebook.metadata
    assert any("ReductionPanel()" in cell.source for cell in notebook.cells)
    (home / "hcdc-tutorials" / "PI_GUIDE.md").write_text("my notes")
    assert HCDCSystemUserSpawner._install_starters(spawner, account) == []  # never overwritten
    assert (home / "hcdc-tutorials" / "PI_GUIDE.md").read_text() == "my notes"
    other = tmp_path / "home2"
    other.mkdir()
    (other / "hcdc-tutorials").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    account2 = pwd.struct_passwd((me.pw_name, "x", me.pw_uid, me.pw_gid, "", str(other), "/bin/sh"))
    assert HCDCSystemUserSpawner._install_starters(spawner, account2) == []
    assert not any((tmp_path / "elsewhere").iterdir())


def test_images_have_arcsec_axes_from_the_star_and_a_compass_when_north_up():
    from types import SimpleNamespace

    from hcdc_widgets.plots import image_figure
    from reduction.conventions import star_centre

    ny, nx, scale = 41, 41, 0.01225
    cy, cx = star_centre((ny, nx))
    image = np.zeros((ny, nx))
    image[cy + 10, cx - 5] = 1.0  # a source 0.1225" north and 0.06125" east of the star
    source = SimpleNamespace(x=cx - 5.0, y=cy + 10.0, snr=9.0)
    fig = image_figure(image, "S/N map", "snrmap", [source], pixel_scale_arcsec=scale, north_up=True)
    assert fig.x_range.start > fig.x_range.end  # east (positive ΔRA) to the left
    assert "ΔRA" in fig.xaxis[0].axis_label and "ΔDec" in fig.yaxis[0].axis_label
    assert {a.name for a in fig.center if type(a).__name__ == "Arrow"} == {"compass-N", "compass-E"}
    north = next(a for a in fig.center if getattr(a, "name", "") == "compass-N")
    east = next(a for a in fig.center if getattr(a, "name", "") == "compass-E")
    assert north.y_end > north.y_start and north.x_end == north.x_start
    assert east.x_end > east.x_start  # towards positive ΔRA, drawn leftwards on the reversed axis
    candidates = fig.select_one({"name": "candidates"}).data
    assert candidates["x"][0] == pytest.approx(5 * scale) and candidates["y"][0] == pytest.approx(10 * scale)
    # the bright pixel is drawn where the candidate is: column j of the drawn array spans x0 + j*scale ..
    glyph = next(r for r in fig.renderers if type(r.glyph).__name__ == "Image")
    drawn = np.asarray(glyph.data_source.data["image"][0])
    row, column = np.unravel_index(np.argmax(drawn), drawn.shape)
    x0, y0 = glyph.glyph.x, glyph.glyph.y
    assert x0 + (column + 0.5) * scale == pytest.approx(5 * scale)
    assert y0 + (row + 0.5) * scale == pytest.approx(10 * scale)
    # a frame as observed (not derotated): plain offsets, no compass
    frame = image_figure(image, "frame", "frame", pixel_scale_arcsec=scale)
    assert frame.x_range.start < frame.x_range.end and "Δx" in frame.xaxis[0].axis_label
    assert not [a for a in frame.center if type(a).__name__ == "Arrow"]
    pixels = image_figure(image, "frame", "frame")
    assert pixels.xaxis[0].axis_label == "x (px)"
