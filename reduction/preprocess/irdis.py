"""IRDIS dual-band imaging: one observation's raw frames -> a calibrated, centred (2, t, y, x) cube."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import conventions
from ..centring import CentringError, WaffleCentringParameters, find_waffle_centre, waffle_spot_separation_px
from ..instruments import SphereIrdis
from ..rawio import RawHeader
from .angles import parallactic_angles
from .calibrate import calibrate_frames, reduce_calibrations
from .centre import coarse_waffle_centre
from .model import CalibratedObservation, ObservationFiles, PreprocessingError, PreprocessParameters
from .photometry import frame_quality, gaussian_fwhm, psf_photometry
from .reading import RawFrames, Reader, dit_of, matching_shape, release
from .shifts import centred_crop


def band_region(
    centre_xy: tuple[float, float], window_index: int, windows: list[tuple[int, int, int, int]], crop: int, margin: int
) -> tuple[tuple[slice, slice], tuple[int, int]]:
    """Detector slices around a band's star that a crop of ``crop`` px needs, and the cut's origin in the band.

    ``margin`` covers the Fourier-shift padding and the bad-pixel box, so that the
    crop is the same as if the whole band had been calibrated.
    """
    x_band = sum(w[2] for w in windows[:window_index])
    _x0, _y0, nx, ny = windows[window_index]
    half = crop // 2 + margin
    ix, iy = int(np.floor(centre_xy[0] + 0.5)), int(np.floor(centre_xy[1] + 0.5))
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    return (slice(y0, y1), slice(x_band + x0, x_band + x1)), (x0, y0)


def split_bands(frames: np.ndarray, windows: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """The data's windows side by side along x -> one array per band."""
    out, x = [], 0
    for _x0, _y0, nx, ny in windows:
        out.append(frames[..., :ny, x : x + nx])
        x += nx
    return out


def preprocess_irdis(
    files: ObservationFiles,
    params: PreprocessParameters,
    instrument,
    reader: Reader,
    heads: list[RawHeader],
    problems: list[str],
) -> CalibratedObservation:
    used: list[RawFrames] = []
    reference = heads[0]
    shape = tuple(reference.shape[-2:])
    windows = SphereIrdis.readout_windows(reference.header)
    filt = instrument.filters.get(files.filter)
    if filt is None:
        raise PreprocessingError(f"unknown IRDIS filter {files.filter!r}")
    wavelengths = filt.wavelengths_um
    pixel_scale = instrument.pixel_scale_arcsec(files.filter)
    lod_px = [w * 1e-6 / 8.0 * 206264.806 / pixel_scale for w in wavelengths]
    calibrations = reduce_calibrations(files, shape, problems, used, reader)
    box = params.bad_pixel_box

    # star centre from the CENTER frames
    centre_raws = matching_shape(reader.read(files.center, problems), shape, "CENTER", problems)
    used.extend(centre_raws)
    coro_x = reference.header.get("HIERARCH ESO SEQ CORO XC")
    coro_y = reference.header.get("HIERARCH ESO SEQ CORO YC")
    centres_file: list[tuple[float, float]] | None = None
    centre_errors: list[float] = []
    centre_status = "waffle"
    if centre_raws:
        centre_images = []
        for raw in centre_raws:
            # calibrating the file's mean frame once is n times cheaper; the subtraction and the flat
            # are linear, and the bad-pixel median on the mean frame is as good for the spots
            mean = raw.data.mean(axis=0, keepdims=True)
            centre_images.append(calibrate_frames(mean, dit_of(raw), calibrations, box, "CENTER", problems)[0])
        release(centre_raws)
        mean_centre = np.mean(centre_images, axis=0)
        centres_file = []
        for band, (image, window) in enumerate(zip(split_bands(mean_centre, windows), windows)):
            x0, y0, _nx, _ny = window
            if coro_x is not None and coro_y is not None:
                gx = float(coro_x) - 1 + band * SphereIrdis.dbi_band_offset_px[0] - x0
                gy = float(coro_y) - 1 + band * SphereIrdis.dbi_band_offset_px[1] - y0
            else:
                gx, gy = image.shape[1] / 2, image.shape[0] / 2
            separation = waffle_spot_separation_px(wavelengths[band], pixel_scale)
            try:
                # work on a cut-out around the guess: filters on a full 1024x1024 band are slow
                half = int(separation + params.centre_search_px + 20)
                cx0 = int(np.clip(round(gx) - half, 0, max(image.shape[1] - 2 * half - 1, 0)))
                cy0 = int(np.clip(round(gy) - half, 0, max(image.shape[0] - 2 * half - 1, 0)))
                cut = image[cy0 : cy0 + 2 * half + 1, cx0 : cx0 + 2 * half + 1]
                coarse = coarse_waffle_centre(cut, separation, (gx - cx0, gy - cy0), params.centre_search_px)
                found = find_waffle_centre(cut, coarse, WaffleCentringParameters(spot_separation_px=separation))
            except CentringError as exc:
                problems.append(f"band {band + 1}: star centre not found from the waffle spots ({exc})")
                centres_file = None
                break
            centres_file.append((found.centre_xy[0] + cx0, found.centre_xy[1] + cy0))
            per_file = _per_file_centres(centre_images, band, windows, (cy0, cx0, half), found, separation)
            centre_errors.append(_waffle_centre_uncertainty(found, per_file))
    else:
        problems.append("no OBJECT,CENTER frames: the star centre cannot be measured")
    if centres_file is None:
        # best effort, said loudly: the coronagraph position from the header
        if coro_x is None:
            raise PreprocessingError("no star centre: no usable CENTER frames and no SEQ CORO XC/YC in the header")
        centres_file = []
        for band, (x0, y0, _nx, _ny) in enumerate(windows):
            centres_file.append(
                (
                    float(coro_x) - 1 + band * SphereIrdis.dbi_band_offset_px[0] - x0,
                    float(coro_y) - 1 + band * SphereIrdis.dbi_band_offset_px[1] - y0,
                )
            )
        centre_status = "centre-from-header"
        centre_errors = [params.header_centre_uncertainty_px] * len(windows)
        problems.append(
            f"star centre taken from SEQ CORO XC/YC: its uncertainty is counted as "
            f"{params.header_centre_uncertainty_px:g} px (centre-from-header)"
        )

    # the crop stays inside the detector windows: zero padding would fake infinitely deep limits
    crop = params.crop_px
    for (cx, cy), (_x0, _y0, nx, ny) in zip(centres_file, windows):
        room = int(min(cx, cy, nx - 1 - cx, ny - 1 - cy))
        crop = min(crop, 2 * room + 1)
    if crop < params.crop_px:
        problems.append(f"frames cropped to {crop} px (detector window), not {params.crop_px}")
    if crop < 21:
        raise PreprocessingError(f"the star is {crop // 2} px from the window edge: nothing to crop")

    # science frames, streamed: one file at a time is in memory (plus the reader's look-ahead)
    frames_per_band: list[list[np.ndarray]] = [[] for _ in windows]
    names: list[tuple[str, int]] = []
    # only the pixels of the crops are calibrated (a 201-px crop is 4 % of a 1024x1024 band)
    margin = 8 + box // 2 + 1  # centred_crop's Fourier padding + the bad-pixel box
    regions = [band_region(centres_file[band], band, windows, crop, margin) for band in range(len(windows))]
    science: list[RawFrames] = []
    for head in heads:
        for raw in matching_shape(reader.read([Path(head.path)], problems), shape, "OBJECT", problems):
            dit = dit_of(raw)
            for band, (region, (x0, y0)) in enumerate(regions):
                calibrated = calibrate_frames(raw.data, dit, calibrations, box, "science", problems, region)
                cx, cy = centres_file[band]
                frames_per_band[band].append(centred_crop(calibrated, (cx - x0, cy - y0), crop))
            names.extend((raw.path.name, i) for i in range(raw.n_frames))
            release([raw])  # the crops are all that is needed from now on: free the full frames
            science.append(raw)
    if not science:
        raise PreprocessingError("no readable OBJECT (science) file")
    used.extend(science)
    cube = np.stack([np.concatenate(parts, axis=0) for parts in frames_per_band])  # (λ, t, y, x)
    times, parang = parallactic_angles(science)
    derotation = conventions.derotation_angles(
        parang, instrument.pupil_offset_deg.value, instrument.true_north_deg.value
    )

    frames, keep = frame_quality(cube[0], names, times, parang, derotation, params, lod_px[0], problems)

    # off-axis PSF and stellar flux
    psf = fwhm = star_flux = star_flux_rel_err = None
    flux_raws = matching_shape(reader.read(files.flux, problems), shape, "FLUX", problems)
    used.extend(flux_raws)
    if flux_raws:
        psfs, fwhm_list, flux_list, flux_err_list = [], [], [], []
        science_dit = dit_of(science[0])
        science_nd = SphereIrdis._opt_str(science[0].header, "neutral_density", "")
        flux_means = [
            split_bands(
                calibrate_frames(
                    raw.data.mean(axis=0, keepdims=True), dit_of(raw), calibrations, box, "FLUX", problems
                )[0],
                windows,
            )
            for raw in flux_raws
        ]
        release(flux_raws)
        flux_dits = [dit_of(raw) for raw in flux_raws]
        flux_nds = [SphereIrdis._opt_str(raw.header, "neutral_density", "") for raw in flux_raws]
        for band in range(len(windows)):
            stacks = []
            for parts in flux_means:
                mean = parts[band]
                smooth = ndimage.gaussian_filter(mean, 1.0)
                py, px = np.unravel_index(np.argmax(smooth), smooth.shape)
                crop = centred_crop(mean[None], (float(px), float(py)), params.psf_crop_px + 8)[0]
                _width, fx, fy = gaussian_fwhm(crop)
                stacks.append(centred_crop(crop[None], (fx, fy), params.psf_crop_px)[0])
            photometry = psf_photometry(stacks, flux_dits, flux_nds, wavelengths[band], science_dit, science_nd)
            psfs.append(photometry.psf)
            fwhm_list.append(photometry.fwhm_px)
            flux_list.append(photometry.star_flux)
            flux_err_list.append(photometry.star_flux_rel_err)
        psf = np.stack(psfs).astype(np.float32)
        fwhm = tuple(fwhm_list)
        star_flux = tuple(flux_list)
        star_flux_rel_err = tuple(flux_err_list)
    else:
        problems.append("no OBJECT,FLUX frames: no off-axis PSF, contrasts cannot be calibrated")

    centres_detector = tuple((x + w[0], y + w[1]) for (x, y), w in zip(centres_file, windows))
    unique_inputs = {str(r.path): r.sha256 for r in used}
    return CalibratedObservation(
        cube=cube[:, keep],
        derotation_deg=derotation[keep],
        parallactic_deg=parang[keep],
        wavelengths_um=tuple(wavelengths),
        psf=psf,
        fwhm_px=fwhm,
        star_flux=star_flux,
        centres_file_xy=tuple(centres_file),
        centres_detector_xy=centres_detector,
        frames=tuple(frames),
        calibrations=calibrations.quality,
        reduced_calibrations=calibrations.products,
        pixel_scale_arcsec=pixel_scale,
        problems=tuple(dict.fromkeys(problems)),
        inputs=tuple({"path": p, "sha256": h} for p, h in sorted(unique_inputs.items())),
        centre_status=centre_status,
        centre_uncertainty_px=tuple(centre_errors),
        star_flux_rel_err=star_flux_rel_err,
    )


def _per_file_centres(
    centre_images: list[np.ndarray], band: int, windows, cut: tuple[int, int, int], mean_fit, separation: float
) -> list[tuple[float, float]]:
    """The waffle centre of each CENTER file alone (its spots fitted from the mean's centre)."""
    cy0, cx0, half = cut
    centres = []
    for image in centre_images:
        part = split_bands(image, windows)[band][cy0 : cy0 + 2 * half + 1, cx0 : cx0 + 2 * half + 1]
        try:
            fit = find_waffle_centre(part, mean_fit.centre_xy, WaffleCentringParameters(spot_separation_px=separation))
        except CentringError:
            continue  # a file whose spots are too faint alone still counts in the mean
        centres.append(fit.centre_xy)
    return centres


def _waffle_centre_uncertainty(mean_fit, per_file: list[tuple[float, float]]) -> float:
    """Per-axis 1-sigma of the waffle centre: the larger of two measured disagreements.

    * the scatter of the CENTER files' centres (ddof=1, the mean over x and y): the drift of the star
      behind the coronagraph between the CENTER frames that bracket the sequence;
    * half the distance between the midpoints of the two spot diagonals of the mean fit: each diagonal
      gives the centre on its own, so their disagreement measures the fit's error.
    """
    asymmetry = 0.5 * float(mean_fit.asymmetry_px)
    if len(per_file) < 2:
        return asymmetry
    centres = np.asarray(per_file, dtype=float)
    scatter = float(np.sqrt(np.mean(np.var(centres, axis=0, ddof=1))))
    return max(scatter, asymmetry)
