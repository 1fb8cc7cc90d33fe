"""``hcdc postprocess``: PSF subtraction, detection, characterisation and limits of one cube.

Usage::

    hcdc postprocess CUBE.fits --angles ANGLES.fits --psf PSF.fits --pixel-scale ARCSEC \\
        [--star-flux F] [--algorithm pca|annular-pca|cadi] [--ncomp N] [--recenter] --out DIR

Every parameter of :class:`reduction.postproc.pipeline.PostprocessParameters` is an option,
generated from the dataclass and its docstring (:mod:`hcdc.cli_parameters`).

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

from reduction.postproc.pipeline import PostprocessParameters

from .cli_parameters import parameter_options, parameters_from_options

#: flags kept from before the options were generated (scripts use them)
FLAGS = {"--recenter-positive": ("recenter_negative", False)}

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
    help="Off-axis PSF image (normalised internally: flux 1 in an aperture of diameter 1 FWHM).",
)
@click.option("--pixel-scale", required=True, type=float, help="Pixel scale in arcsec/px.")
@click.option(
    "--star-flux",
    type=float,
    default=None,
    help="Stellar flux in an aperture of diameter 1 FWHM, cube units (vip's starphot); gives contrasts.",
)
@click.option(
    "--instrument",
    default=None,
    help="Instrument of the cube (SPHERE-IRDIS, SPHERE-IFS, NACO, GPI): its published pixel-scale, north and "
    "distortion uncertainties enter the error budget. Without it those terms are not counted.",
)
@click.option("--filter", "filter_name", default=None, help="Filter (the pixel scale of IRDIS depends on it).")
@click.option(
    "--centre-uncertainty",
    type=click.FloatRange(0, None),
    default=None,
    help="1-sigma (px per axis) of the cube's centring, counted in the error budget (--recenter measures it).",
)
@parameter_options(PostprocessParameters, flags=FLAGS)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory."
)
def postprocess(
    cube: Path,
    angles: Path,
    psf: Path,
    pixel_scale: float,
    star_flux: float | None,
    instrument: str | None,
    filter_name: str | None,
    centre_uncertainty: float | None,
    out_dir: Path,
    **options,
) -> None:
    """Post-process the ADI CUBE: PSF subtraction, S/N map, candidates, NEGFC, contrast curve.

    The cube is taken as centred on pixel (ny//2, nx//2) unless --recenter is given.
    Writes DIR/detections.ecsv, DIR/contrast_curve.ecsv, DIR/residuals.fits, DIR/snrmap.fits.
    """
    from reduction.fitsio_products import ProductInputError, provenance_record, read_angles, read_cube, read_psf
    from reduction.postproc.pipeline import PostprocessStep
    from reduction.postproc.products import write_products

    params, _ = parameters_from_options(PostprocessParameters, options, flags=FLAGS)
    systematics = _systematics(instrument, filter_name, centre_uncertainty)
    started = time.time()
    try:
        data = read_cube(cube)
        angle_list = read_angles(angles)
        psf_image = read_psf(psf)
        if data.ndim != 3:
            raise ValueError(f"{cube}: the command processes 3-D (t, y, x) ADI cubes, got shape {data.shape}")
        result = PostprocessStep()(
            params,
            cube=data,
            angles=angle_list,
            psf=psf_image,
            pixel_scale=pixel_scale,
            star_flux=star_flux,
            systematics=systematics,
        )
    except (ProductInputError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    provenance = provenance_record(
        PostprocessStep.name,
        PostprocessStep.version,
        {**params.to_dict(), "pixel_scale": pixel_scale, "star_flux": star_flux},
        {"cube": cube, "angles": angles, "psf": psf},
    )
    write_products(result, params, out_dir, provenance, pixel_scale=pixel_scale, star_flux=star_flux)
    for note in result.subtraction.notes:
        click.echo(f"note: {note}", err=True)
    detection = params.detection
    click.echo(
        f"{len(result.detection.candidates)} candidate(s) above {detection.threshold:g} ({detection.threshold_on}); "
        f"products in {out_dir} ({time.time() - started:.1f} s)",
        err=True,
    )
    for item in result.characterised:
        c = item.candidate
        text = f'  ({c.x:.2f}, {c.y:.2f}) sep {c.separation_px * pixel_scale:.3f}" S/N {c.snr:.1f} FPF {c.fpf:.2e}'
        if item.negfc is not None:
            text += f" NEGFC flux {item.negfc.flux / result.psf.scale:.4g} (x PSF)"
        click.echo(text, err=True)


def _systematics(instrument: str | None, filter_name: str | None, centre_uncertainty: float | None):
    """The error budget's systematic terms the options give (none known without them)."""
    from reduction.instruments import by_name
    from reduction.postproc.budget import Systematics, instrument_systematics

    centre = float("nan") if centre_uncertainty is None else centre_uncertainty
    source = "not given (--centre-uncertainty)" if centre_uncertainty is None else "--centre-uncertainty"
    if instrument is None:
        return Systematics(centre_px=centre, sources=(("centre", source),))
    try:
        instrument_class = by_name(instrument)
    except KeyError as exc:
        raise click.BadParameter(str(exc).strip('"'), param_hint="--instrument") from exc
    return instrument_systematics(
        instrument_class, filter_name, centre_px=centre, centre_status="given", centre_source=source
    )


if __name__ == "__main__":  # pragma: no cover
    postprocess(sys.argv[1:])
