"""Defensive FITS reading: every kind of broken file gives a clear error naming the file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from astropy.io import fits

from reduction.rawio import RawFileError, read_raw_header

from .factories import sphere_header, write_fits


@pytest.fixture
def good(tmp_path):
    return write_fits(tmp_path / "good.fits", sphere_header("OBJECT"), shape=(3, 16, 32))


def test_good_file_header_shape_and_hash(good):
    raw = read_raw_header(good)
    assert raw.shape == (3, 16, 32)
    assert raw.header["HIERARCH ESO DPR TYPE"] == "OBJECT"
    assert raw.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    assert raw.size_bytes == good.stat().st_size


def test_zero_length(tmp_path):
    path = tmp_path / "empty.fits"
    path.write_bytes(b"")
    with pytest.raises(RawFileError, match="empty file") as error:
        read_raw_header(path)
    assert str(path) in str(error.value)


def test_text_named_fits(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("this is a night log, not a FITS file\n" * 100)
    with pytest.raises(RawFileError, match="not a FITS file") as error:
        read_raw_header(path)
    assert error.value.keyword == "SIMPLE"


def test_truncated_data(good, tmp_path):
    data = good.read_bytes()
    path = tmp_path / "truncated.fits"
    path.write_bytes(data[: len(data) - 3000])
    with pytest.raises(RawFileError, match="truncated FITS file"):
        read_raw_header(path)


def test_truncated_header(good, tmp_path):
    path = tmp_path / "cut.fits"
    path.write_bytes(good.read_bytes()[:2880])  # the ESO header is longer than one block
    with pytest.raises(RawFileError, match="no END card"):
        read_raw_header(path)


def test_primary_without_data_reads_first_extension(tmp_path):
    """GPI writes its pixels in the SCI extension."""
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"] = "GPI"
    sci = fits.ImageHDU(np.zeros((37, 20, 20), dtype=np.float32), name="SCI")
    sci.header["ITIME"] = 59.6
    path = tmp_path / "gpi.fits"
    fits.HDUList([primary, sci]).writeto(path)
    raw = read_raw_header(path)
    assert raw.shape == (37, 20, 20)
    assert raw.header["INSTRUME"] == "GPI" and raw.header["ITIME"] == 59.6
    data = path.read_bytes()
    (tmp_path / "gpi_cut.fits").write_bytes(data[:-5000])
    with pytest.raises(RawFileError, match="truncated"):
        read_raw_header(tmp_path / "gpi_cut.fits")


def test_fast_header_parser_agrees_with_astropy(tmp_path):
    """Every card of a real ESO header reads the same with our parser as with astropy."""
    from reduction.rawio import FastHeader, parse_header

    header = sphere_header("OBJECT")
    header["HIERARCH ESO TEL AMBI TAU0"] = 4.2e-3
    header["HIERARCH ESO DET EXP NAME"] = "O'Brien's frame"
    header["HIERARCH ESO INS NEGATIVE"] = -12
    header["BIGEXP"] = 1.5e-300
    header["LOGIC"] = False
    header["UNDEF"] = None
    text = header.tostring()
    fast = parse_header(text)
    assert isinstance(fast, FastHeader)
    for card in header.cards:
        key = card.keyword if not card.keyword.startswith("ESO ") else "HIERARCH " + card.keyword
        expected = header[card.keyword]
        value = fast[key]
        if expected is None or type(expected).__name__ == "Undefined":
            assert value is None, key
        else:
            assert value == expected and type(value) is type(expected), key
    assert "ESO DPR TYPE" in fast and fast["ESO DPR TYPE"] == "OBJECT"
    assert fast.to_astropy()["HIERARCH ESO DPR TYPE"] == "OBJECT"
    # a card we do not parse falls back to astropy
    header["CPLX"] = complex(1, 2)
    assert not isinstance(parse_header(header.tostring()), FastHeader)


# --- read_raw_image: one read for hash, header and pixels -----------------------------------


@pytest.mark.parametrize(
    "dtype, bzero", [(np.int16, 32768), (np.int16, 0), (np.int32, 0), (np.float32, 0), (np.float64, 0), (np.uint8, 0)]
)
def test_read_raw_image_decodes_like_astropy(tmp_path, dtype, bzero):
    """Pixels equal astropy's (BSCALE/BZERO applied, as float32), hash equals the file's sha256."""
    from reduction.rawio import read_raw_image

    rng = np.random.default_rng(3)
    values = rng.integers(0, 250, size=(3, 16, 32)).astype(dtype)
    hdu = fits.PrimaryHDU(values, header=sphere_header("OBJECT"))
    if bzero:
        hdu.scale("int16", bzero=bzero)
        hdu.data = (values.astype(np.int32) + 30000).astype(np.uint16)  # ADU above 32767
    path = tmp_path / "image.fits"
    hdu.writeto(path)
    image = read_raw_image(path)
    with fits.open(path) as hdul:
        expected = np.asarray(hdul[0].data, dtype=np.float32)
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, expected)
    assert image.header.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert image.header.header["HIERARCH ESO DPR TYPE"] == "OBJECT"
    if bzero:
        assert expected.max() > 32767  # the BZERO path was really exercised


def test_read_raw_image_extension_and_errors(tmp_path, good):
    from reduction.rawio import read_raw_image

    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"] = "GPI"
    cube = np.arange(37 * 20 * 20, dtype=np.float32).reshape(37, 20, 20)
    path = tmp_path / "gpi.fits"
    fits.HDUList([primary, fits.ImageHDU(cube, name="SCI")]).writeto(path)
    np.testing.assert_array_equal(read_raw_image(path).data, cube)

    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:-3000])
    with pytest.raises(RawFileError, match="truncated FITS file") as error:
        read_raw_image(cut)
    assert str(cut) in str(error.value) and error.value.keyword == "NAXIS"
    header_only = tmp_path / "header_only.fits"
    fits.PrimaryHDU(header=sphere_header("OBJECT")).writeto(header_only)
    with pytest.raises(RawFileError, match="no image data"):
        read_raw_image(header_only)


def test_read_raw_header_only_checks_without_reading_pixels(tmp_path, good):
    """Header-only reading: same header and shape, truncation still caught (from the file length)."""
    from reduction.rawio import read_raw_header_only

    head = read_raw_header_only(good)
    full = read_raw_header(good)
    assert head.shape == full.shape and head.size_bytes == full.size_bytes and head.sha256 == ""
    assert dict(head.header) == dict(full.header)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:-3000])
    with pytest.raises(RawFileError, match="truncated FITS file"):
        read_raw_header_only(cut)
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"] = "GPI"
    path = tmp_path / "gpi.fits"
    fits.HDUList([primary, fits.ImageHDU(np.zeros((37, 20, 20), dtype=np.float32), name="SCI")]).writeto(path)
    assert read_raw_header_only(path).shape == (37, 20, 20)
