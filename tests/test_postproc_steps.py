"""The post-processing steps: frozen parameters, declared inputs/outputs, one result object."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reduction.postproc import inject_companions
from reduction.postproc.pipeline import (
    CharacterisationParameters,
    CharacterisationStep,
    ContrastCurveParameters,
    ContrastCurveStep,
    DetectionParameters,
    DetectionStep,
    PostprocessParameters,
    PostprocessStep,
    PsfSubtractionParameters,
    PsfSubtractionStep,
)
from reduction.postproc.results import (
    ContrastCurve,
    DetectionResult,
    NegfcResult,
    PostprocessResult,
    PsfSubtractionResult,
)
from reduction.steps import Step


def small_case(seed=0):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    cube = ndimage.gaussian_filter(rng.normal(size=(20, 41, 41)), (0, 1.2, 1.2)) * 2
    cube += ndimage.gaussian_filter(rng.normal(size=(41, 41)), 1.5)[None] * 10
    angles = np.linspace(-30, 60, 20)
    yy, xx = np.mgrid[:11, :11]
    psf = 3.0 * np.exp(-((xx - 5) ** 2 + (yy - 5) ** 2) / (2 * 1.7**2))
    return cube, angles, psf


STEPS = [PsfSubtractionStep, DetectionStep, CharacterisationStep, ContrastCurveStep, PostprocessStep]


@pytest.mark.parametrize("step", STEPS)
def test_step_contract(step):
    assert issubclass(step, Step)
    described = step().describe()
    assert described["name"] and described["version"] and described["inputs"] and described["outputs"]
    params = step.Parameters()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(params, dataclasses.fields(params)[0].name, 1)
    again = type(params).from_dict(params.to_dict())
    assert again == params and again.fingerprint() == params.fingerprint()


def test_parameters_change_the_fingerprint():
    a = PostprocessParameters()
    b = PostprocessParameters(subtraction=PsfSubtractionParameters(ncomp=5))
    assert a.fingerprint() != b.fingerprint()
    assert PostprocessParameters.from_dict(b.to_dict()).subtraction.ncomp == 5


def test_steps_run_and_return_one_result_object():
    cube, angles, psf = small_case()
    from reduction.postproc import normalize_psf

    npsf = normalize_psf(psf, size=11)
    with_fc = inject_companions(cube, npsf.psf, angles, 60.0, 12.0, 45.0)
    sub = PsfSubtractionStep()(PsfSubtractionParameters(ncomp=3), cube=with_fc, angles=angles, fwhm=npsf.fwhm)
    assert isinstance(sub, PsfSubtractionResult)
    ann = PsfSubtractionStep()(
        PsfSubtractionParameters(algorithm="annular-pca", ncomp=3), cube=with_fc, angles=angles, fwhm=npsf.fwhm
    )
    assert ann.algorithm == "annular-pca"
    det = DetectionStep()(DetectionParameters(), residuals=sub.residuals, fwhm=npsf.fwhm)
    assert isinstance(det, DetectionResult) and det.brightest is not None
    found = [c for c in det.candidates if abs(c.separation_px - 12.0) < 1.0]
    assert found
    fit = CharacterisationStep()(
        CharacterisationParameters(ncomp=3, n_injections=0),
        cube=with_fc,
        angles=angles,
        psf=npsf.psf,
        fwhm=npsf.fwhm,
        xy=(found[0].x, found[0].y),
    )
    assert isinstance(fit, NegfcResult) and fit.uncertainty is not None
    assert fit.separation_px == pytest.approx(12.0, abs=0.5) and fit.flux == pytest.approx(60.0, rel=0.25)
    curve = ContrastCurveStep()(
        ContrastCurveParameters(),
        cube=cube,
        angles=angles,
        psf=npsf.psf,
        fwhm=npsf.fwhm,
        subtraction=PsfSubtractionParameters(ncomp=3),
        star_flux=1e4,
        pixel_scale=0.0125,
    )
    assert isinstance(curve, ContrastCurve) and curve.contrast is not None


def test_postprocess_step_on_a_small_cube():
    cube, angles, psf = small_case(1)
    from reduction.postproc import normalize_psf

    npsf = normalize_psf(psf, size=11)
    with_fc = inject_companions(cube, npsf.psf, angles, 60.0, 11.0, 200.0)
    params = PostprocessParameters(
        subtraction=PsfSubtractionParameters(ncomp=3),
        characterisation=CharacterisationParameters(ncomp=3, n_injections=2),
    )
    out = PostprocessStep()(params, cube=with_fc, angles=angles, psf=psf, pixel_scale=0.0125, star_flux=1e4)
    assert isinstance(out, PostprocessResult)
    found = [c for c in out.characterised if abs(c.candidate.separation_px - 11.0) < 1.0]
    assert found and found[0].negfc is not None
    assert found[0].negfc.flux == pytest.approx(60.0, rel=0.25)
    assert out.parameters == params.to_dict()
    assert out.contrast.contrast is not None


def test_a_step_call_checks_its_declared_contract():
    """Calling a step checks its parameters, declared inputs and outputs (PynPoint's contract)."""
    import typing

    from reduction.calibration import MasterDarkStep, MasterFlatStep
    from reduction.centring import WaffleCentring
    from reduction.preprocess import Preprocess
    from reduction.steps import Step, StepContractError, StepParameters

    cube, angles = np.zeros((4, 9, 9)), np.zeros(4)
    with pytest.raises(StepContractError, match="missing input.*angles"):
        PsfSubtractionStep()(PsfSubtractionParameters(), cube=cube)
    with pytest.raises(StepContractError, match="undeclared input.*psf_typo"):
        PsfSubtractionStep()(PsfSubtractionParameters(), cube=cube, angles=angles, psf_typo=1)
    with pytest.raises(StepContractError, match="parameters must be PsfSubtractionParameters"):
        PsfSubtractionStep()(DetectionParameters(), cube=cube, angles=angles)

    @dataclasses.dataclass(frozen=True)
    class Nothing(StepParameters):
        pass

    class Forgetful(Step):
        name, version, Parameters, inputs, outputs = "forgetful", "1", Nothing, (), ("residuals",)

        def run(self, params, **inputs):
            return object()

    with pytest.raises(StepContractError, match="lacks the declared output.*residuals"):
        Forgetful()(Nothing())
    # every step's declared outputs are attributes of the result type its run() returns
    for step in STEPS + [MasterDarkStep, MasterFlatStep, WaffleCentring, Preprocess]:
        result = typing.get_type_hints(step.run)["return"]
        names = {f.name for f in dataclasses.fields(result)} | {
            n for n in dir(result) if isinstance(getattr(result, n, None), property)
        }
        assert set(step.outputs) <= names, (step.__name__, set(step.outputs) - names)
