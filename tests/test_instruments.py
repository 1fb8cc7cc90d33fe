"""Instrument layer: one conformance test over every instrument, plus SPHERE specifics."""

from __future__ import annotations

import abc
import math
from datetime import date, datetime, timezone

import pytest
from astropy.io import fits

from reduction.instruments import (
    INSTRUMENTS,
    ClassificationError,
    Constant,
    FrameKind,
    Instrument,
    KeywordMap,
    SphereIfs,
    SphereIrdis,
    by_name,
    classify_header,
    identify,
)

from .factories import REAL_IRDIS_DBI_HEADER, sphere_header


def _minimal_header(instrument: type[Instrument], category: str, type_: str) -> fits.Header:
    """A header with only what the instrument's keyword map says it needs."""
    header = fits.Header()
    identity = {
        "SPHERE-IRDIS": {"INSTRUME": "SPHERE", "HIERARCH ESO SEQ ARM": "IRDIS"},
        "SPHERE-IFS": {"INSTRUME": "SPHERE", "HIERARCH ESO SEQ ARM": "IFS"},
        "NACO": {"INSTRUME": "NAOS+CONICA"},
        "GPI": {"INSTRUME": "GPI"},
    }[instrument.name]
    for key, value in identity.items():
        header[key] = value
    keywords = instrument.keywords
    header[keywords.first_keyword("category")] = category
    header[keywords.first_keyword("type")] = type_
    header[keywords.first_keyword("date_obs")] = "2019-03-01T02:03:04.5"
    header[keywords.first_keyword("dit")] = 1.5
    return header


def _vocabulary(instrument: type[Instrument]) -> dict[str, FrameKind]:
    import reduction.instruments.gpi as gpi
    import reduction.instruments.naco as naco
    import reduction.instruments.sphere as sphere

    return {
        "SPHERE-IRDIS": sphere.SPHERE_DPR_TYPES,
        "SPHERE-IFS": sphere.SPHERE_DPR_TYPES,
        "NACO": naco.NACO_DPR_TYPES,
        "GPI": gpi.GPI_OBSTYPES,
    }[instrument.name]


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=lambda i: i.name)
class TestConformance:
    """Every instrument satisfies the same contract."""

    def test_is_concrete_subclass_of_the_abc(self, instrument):
        assert issubclass(instrument, Instrument)
        assert isinstance(Instrument, abc.ABCMeta)
        assert not getattr(instrument, "__abstractmethods__", None)
        with pytest.raises(TypeError):
            Instrument()  # the base is abstract

    def test_constants_have_values_and_sources(self, instrument):
        constants = instrument.constants()
        for name in ("pixel_scale_mas", "true_north_deg", "pupil_offset_deg", "distortion"):
            assert isinstance(constants[name], Constant), name
        assert instrument.distortion.unit in ("fraction", "px")
        assert 0 <= instrument.north_uncertainty_deg() < 1.0  # the published calibrations are all below 0.2 deg
        for name, constant in constants.items():
            assert math.isfinite(constant.value) and constant.uncertainty >= 0, name
            assert len(constant.source) > 10, f"{instrument.name}.{name} has no source"
        assert 1.0 < instrument.pixel_scale_mas.value < 50.0
        assert instrument.filters and all(f.source for f in instrument.filters.values())
        assert len(instrument.detector_shape) == 2
        assert -90 <= instrument.site_latitude_deg <= 90

    def test_keywords_are_data(self, instrument):
        assert isinstance(instrument.keywords, KeywordMap)
        for name in instrument.keywords.field_names():
            value = getattr(instrument.keywords, name)
            assert value is None or (isinstance(value, tuple) and all(isinstance(k, str) for k in value)), name
        for required in instrument.required:
            assert getattr(instrument.keywords, required), f"{required} has no keyword"

    def test_every_declared_frame_type_classifies(self, instrument):
        for type_, kind in _vocabulary(instrument).items():
            category = "CALIB" if kind.is_calibration and kind is not FrameKind.SKY else "SCIENCE"
            header = _minimal_header(instrument, category, type_)
            if instrument.name == "GPI" and type_ == "OBJECT":
                header["OCCULTER"] = "FPM_H"
            assert identify(header, "x.fits") is instrument
            info = instrument.classify(header, "x.fits")
            assert info.kind is kind, type_
            assert info.instrument == instrument.name
            assert info.dit_s == 1.5
            assert info.date_obs == datetime(2019, 3, 1, 2, 3, 4, 500000, tzinfo=timezone.utc)

    def test_missing_type_keyword_names_it(self, instrument):
        header = _minimal_header(instrument, "SCIENCE", "OBJECT")
        del header[instrument.keywords.first_keyword("type")]
        with pytest.raises(ClassificationError) as error:
            instrument.classify(header, "/archive/f.fits")
        assert error.value.keyword == instrument.keywords.first_keyword("type")
        assert "/archive/f.fits" in str(error.value)

    def test_night_boundary_is_local_noon(self, instrument):
        # 2019-03-02 15:59 UTC is 11:59 local (UTC-4): still the night of 03-01
        assert instrument.night_of(datetime(2019, 3, 2, 15, 59, tzinfo=timezone.utc)) == date(2019, 3, 1)
        assert instrument.night_of(datetime(2019, 3, 2, 16, 1, tzinfo=timezone.utc)) == date(2019, 3, 2)
        assert instrument.night_of(datetime(2019, 3, 2, 3, 0, tzinfo=timezone.utc)) == date(2019, 3, 1)

    def test_by_name(self, instrument):
        assert by_name(instrument.name.lower()) is instrument


def test_real_irdis_dbi_header_is_classified():
    header = fits.Header()
    for key, value in REAL_IRDIS_DBI_HEADER.items():
        header[key] = value
    info = classify_header(header, "SPHER.2014-12-04T21:06:51.000.fits", shape=(4, 1024, 2048))
    assert info.instrument == "SPHERE-IRDIS"
    assert info.kind is FrameKind.SCIENCE
    assert info.mode == "DBI" and info.filter == "DB_J23" and info.coronagraph == "N_ALC_YJH_S"
    assert info.dit_s == pytest.approx(0.837464) and info.dit_key == 0.84
    assert info.night == date(2014, 12, 4)
    assert info.target == "VY CMa" and info.ob_name == "OB-VYCMa-JH"
    assert info.programme == "094.D-0869(A)"
    assert info.parang_start_deg == pytest.approx(-91.207) and info.parang_end_deg == pytest.approx(-91.075)
    assert info.conditions.airmass == pytest.approx(1.059)
    assert info.conditions.seeing_arcsec == pytest.approx(0.83)
    assert info.conditions.tau0_ms == pytest.approx(4.2)
    assert info.n_frames == 4 and info.neutral_density == "ND_N_1.0"
    assert SphereIrdis.pixel_scale_arcsec("DB_J23") == pytest.approx(0.01226, abs=5e-5)


@pytest.mark.parametrize(
    "kind, dpr",
    [
        (FrameKind.CENTER, "OBJECT,CENTER"),
        (FrameKind.FLUX, "OBJECT,FLUX"),
        (FrameKind.SKY, "SKY"),
        (FrameKind.DARK, "DARK"),
        (FrameKind.BACKGROUND, "DARK,BACKGROUND"),
        (FrameKind.FLAT, "FLAT,LAMP"),
    ],
)
def test_sphere_frame_types(kind, dpr):
    info = classify_header(sphere_header(dpr), "f.fits")
    assert info.kind is kind
    if kind.is_calibration and kind is not FrameKind.SKY:
        assert info.target is None  # OBJECT='DARK' is not a target


def test_derotator_keyword_rename_2021():
    """INS4 DROT2 BEGIN (until June 2021) and START (after) are both read."""
    before = sphere_header("OBJECT", when="2021-05-01T03:00:00")
    info = classify_header(before, "old.fits")
    assert info.derotator_start_deg == pytest.approx(12.345)
    after = sphere_header("OBJECT", when="2021-07-01T03:00:00")
    del after["HIERARCH ESO INS4 DROT2 BEGIN"]
    after["HIERARCH ESO INS4 DROT2 START"] = 54.321
    assert classify_header(after, "new.fits").derotator_start_deg == pytest.approx(54.321)
    neither = sphere_header("OBJECT")
    del neither["HIERARCH ESO INS4 DROT2 BEGIN"]
    assert classify_header(neither, "none.fits").derotator_start_deg is None


def test_ifs_arm_is_told_apart():
    header = sphere_header(
        "OBJECT",
        **{"HIERARCH ESO SEQ ARM": "IFS", "HIERARCH ESO INS2 COMB IFS": "OBS_YJ", "HIERARCH ESO DPR TECH": "IFU"},
    )
    info = classify_header(header, "ifs.fits")
    assert info.instrument == SphereIfs.name and info.mode == "OBS_YJ"
    assert SphereIfs.derotation_offset_deg() == pytest.approx(135.99 - 100.48 - 1.75)


def test_unknown_instrument_and_missing_instrume():
    header = sphere_header("OBJECT")
    header["INSTRUME"] = "HARPS"
    with pytest.raises(ClassificationError, match="unknown instrument 'HARPS'"):
        classify_header(header, "h.fits")
    del header["INSTRUME"]
    with pytest.raises(ClassificationError) as error:
        classify_header(header, "h.fits")
    assert error.value.keyword == "INSTRUME"


def test_bad_values_name_the_keyword():
    header = sphere_header("OBJECT")
    header["HIERARCH ESO DET SEQ1 DIT"] = "fast"
    with pytest.raises(ClassificationError) as error:
        classify_header(header, "d.fits")
    assert error.value.keyword == "HIERARCH ESO DET SEQ1 DIT"
    header = sphere_header("OBJECT")
    header["DATE-OBS"] = "yesterday"
    with pytest.raises(ClassificationError) as error:
        classify_header(header, "d.fits")
    assert error.value.keyword == "DATE-OBS"


def test_dimm_not_running_is_missing_not_negative():
    """ESO writes -1 in TEL AMBI FWHM/TAU0 when the site monitor is not running (daytime calibrations)."""
    header = sphere_header(
        "DARK",
        **{
            "HIERARCH ESO TEL AMBI FWHM START": -1.0,
            "HIERARCH ESO TEL AMBI FWHM END": -1.0,
            "HIERARCH ESO TEL AMBI TAU0": -1.0,
        },
    )
    info = classify_header(header, "dark.fits")
    assert info.conditions.seeing_arcsec is None and info.conditions.tau0_ms is None
    half = sphere_header("OBJECT", **{"HIERARCH ESO TEL AMBI FWHM START": -1.0, "HIERARCH ESO TEL AMBI FWHM END": 0.9})
    assert classify_header(half, "o.fits").conditions.seeing_arcsec == pytest.approx(0.9)
