"""``hcdc postprocess``: PSF subtraction, detection, characterisation and limits of one cube.

Usage::

    hcdc postprocess CUBE.fits --angles ANGLES.fits --psf PSF.fits --pixel-scale ARCSEC \\
        [--star-flux F] [--algorithm pca|annular-pca|cadi] [--ncomp N] [--recenter] --out DIR

writes ``DIR/detections.ecsv``, ``DIR/contrast_curve.ecsv``, ``DIR/residuals.fits`` and
``DIR/snrmap.fits``. The science is :func:`reduction.postproc.pipeline.postprocess`; this
module only reads the files, calls it and writes the products with their provenance.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from reduction.postproc.tables import contrast_table, detections_table

log = logging.getLogger(__name__)


@click.command("postprocess")
@click.argument("cube", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--angles",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Derotation angles (deg, vip-hci convention), one per frame.",
)
@click.option(
    "--psf",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Off-axis PSF image (normalised internally: 1xFWHM-aperture flux = 1).",
)
@click.option("--pixel-scale", required=True, type=float, help="Pixel scale in arcsec/px.")
@click.option(
    "--star-flux",
    type=float,
    default=None,
    help="Stellar flux in a 1xFWHM-diameter aperture, cube units (vip's starphot); gives contrasts.",
)
@click.option("--algorithm", type=click.Choice(["pca", "annular-pca", "cadi"]), default="pca", show_default=True)
@click.option(
    "--ncomp",
    type=click.IntRange(1, None),
    default=20,
    show_default=True,
    help="Principal components (PCA algorithms and the NEGFC model).",
)
@click.option("--asize", type=float, default=4.0, show_default=True, help="Annulus width in px (annular PCA).")
@click.option(
    "--delta-rot", type=float, default=0.5, show_default=True, help="Rotation threshold in FWHM (annular PCA)."
)
@click.option("--recenter", is_flag=True, help="Re-centre the cube first (negative 2-D Gaussian, vortex dark hole).")
@click.option("--recenter-positive", is_flag=True, help="With --recenter: fit a positive Gaussian (no vortex).")
@click.option("--threshold", type=float, default=5.0, show_default=True, help="Detection threshold.")
@click.option(
    "--threshold-on",
    type=click.Choice(["snr", "significance"]),
    default="snr",
    show_default=True,
    help="Threshold on the Student-t S/N or on its Gaussian-equivalent significance.",
)
@click.option(
    "--max-characterised",
    type=click.IntRange(0, None),
    default=3,
    show_default=True,
    help="Candidates (brightest first) characterised by NEGFC.",
)
@click.option(
    "--n-injections",
    type=click.IntRange(0, None),
    default=12,
    show_default=True,
    help="Fake companions for the NEGFC speckle-noise uncertainty (0: fit term only).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory."
)
def postprocess(
    cube: Path,
    angles: Path,
    psf: Path,
    pixel_scale: float,
    star_flux: float | None,
    algorithm: str,
    ncomp: int,
    asize: float,
    delta_rot: float,
    recenter: bool,
    recenter_positive: bool,
    threshold: float,
    threshold_on: str,
    max_characterised: int,
    n_injections: int,
    out_dir: Path,
) -> None:
    """Post-process the ADI CUBE: PSF subtraction, S/N map, candidates, NEGFC, contrast curve.

    The cube is taken as centred on pixel (ny//2, nx//2) unless --recenter is given.
    Writes DIR/detections.ecsv, DIR/contrast_curve.ecsv, DIR/residuals.fits, DIR/snrmap.fits.
    """
    from reduction.fitsio_products import (
        ProductInputError,
        provenance_record,
        read_angles,
        read_cube,
        read_psf,
        write_image,
        write_table,
    )
    from reduction.postproc.pipeline import (
        CharacterisationParameters,
        DetectionParameters,
        PostprocessParameters,
        PostprocessStep,
        PsfSubtractionParameters,
    )
    from reduction.postproc.pipeline import (
        postprocess as run,
    )

    started = time.time()
    try:
        data = read_cube(cube)
        angle_list = read_angles(angles)
        psf_image = read_psf(psf)
        if data.ndim != 3:
            raise ValueError(f"{cube}: the command processes 3-D (t, y, x) ADI cubes, got shape {data.shape}")
        params = PostprocessParameters(
            subtraction=PsfSubtractionParameters(algorithm=algorithm, ncomp=ncomp, asize=asize, delta_rot=delta_rot),
            detection=DetectionParameters(threshold=threshold, threshold_on=threshold_on),
            characterisation=CharacterisationParameters(ncomp=ncomp, n_injections=n_injections),
            recenter=recenter,
            recenter_negative=not recenter_positive,
            max_characterised=max_characterised,
        )
        result = run(data, angle_list, psf_image, pixel_scale, star_flux=star_flux, params=params)
    except (ProductInputError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = provenance_record(
        PostprocessStep.name,
        PostprocessStep.version,
        {**params.to_dict(), "pixel_scale": pixel_scale, "star_flux": star_flux},
        {"cube": cube, "angles": angles, "psf": psf},
    )
    frame = result.subtraction.residuals
    cy, cx = frame.shape[0] // 2, frame.shape[1] // 2
    cards = {
        "ALGO": (algorithm, "PSF subtraction algorithm"),
        "NCOMP": (ncomp if algorithm != "cadi" else None, "principal components"),
        "FWHM": (float(result.psf.fwhm), "[px] FWHM of the PSF (Gaussian fit)"),
        "PIXSCAL": (float(pixel_scale), "[arcsec/px] pixel scale"),
        "STARX": (cx + 1, "star x, 1-based FITS pixel"),
        "STARY": (cy + 1, "star y, 1-based FITS pixel"),
        "RECENTER": (bool(recenter), "cube re-centred by 2-D Gaussian fit"),
        "NSKIPANN": (len(result.subtraction.skipped_annuli), "annuli skipped (NaN)"),
        "ANGCONV": ("vip-hci", "derotation angle convention"),
    }
    write_image(out_dir / "residuals.fits", frame, provenance, cards)
    write_image(
        out_dir / "snrmap.fits",
        result.detection.snr_map,
        provenance,
        {**cards, "SNRDEF": ("Mawet2014", "small-sample S/N, 1xFWHM apertures")},
    )
    write_table(out_dir / "detections.ecsv", detections_table(result, pixel_scale, star_flux), provenance)
    write_table(out_dir / "contrast_curve.ecsv", contrast_table(result.contrast), provenance)
    for note in result.subtraction.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(
        f"{len(result.detection.candidates)} candidate(s) above {threshold:g} ({threshold_on}); "
        f"products in {out_dir} ({time.time() - started:.1f} s)",
        err=True,
    )
    for item in result.characterised:
        c = item.candidate
        text = f'  ({c.x:.2f}, {c.y:.2f}) sep {c.separation_px * pixel_scale:.3f}" S/N {c.snr:.1f} FPF {c.fpf:.2e}'
        if item.negfc is not None:
            text += f" NEGFC flux {item.negfc.flux / result.psf.scale:.4g} (x PSF)"
        click.echo(text, err=True)


if __name__ == "__main__":  # pragma: no cover
    postprocess(sys.argv[1:])
