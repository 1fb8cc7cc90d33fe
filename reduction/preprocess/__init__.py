"""Science pre-processing: raw SPHERE frames -> a calibrated, centred ADI cube ``(λ, t, y, x)``.

One call, :func:`preprocess_observation`, takes the raw files of one
observation and its matched calibrations (:class:`ObservationFiles`) and
returns a :class:`CalibratedObservation`: the cube ``(λ, t, y, x)`` centred on
the star (``reduction.conventions.star_centre``), its derotation angles
(vip-hci convention), the normalised off-axis PSF, the stellar flux in the
cube's units, the FWHM, the centres, the per-frame quality table and the
reduced calibrations with their quality numbers. Everything that could not be
done is said in ``problems`` (per observation), never silently defaulted.

Steps, in order (SPHERE Data Reduction Handbook; vlt-sphere):
1. master backgrounds per DIT (``DARK,BACKGROUND`` of the filter, else ``DARK``),
   master flat (per-pixel DIT slope), bad-pixel map, master skies per DIT;
2. every frame: ``(raw - sky or background of its DIT) / flat``, bad pixels
   replaced by the median of their good neighbours;
3. split the DBI halves (detector windows in the header);
4. star centre per band from the waffle spots of the CENTER frames (mean of
   the CENTER files, interpolated in time when there are several);
5. per-frame parallactic angles from the header (time, pointing, site) with
   astropy, derotation angle = PARANG + pupil offset + true north;
6. crop around the star and shift each frame (Fourier, sub-pixel) so the star
   sits at the crop's star_centre;
7. bad-frame rejection on the halo flux around the coronagraph (robust z-score);
8. FLUX frames: off-axis PSF per band, FWHM (Gaussian fit), aperture flux,
   normalised for DIT and neutral density to the science frames' units.

IFS observations go through the same sequence with a spectral extraction between
calibration and centring (:mod:`.ifs`).

Modules, each importing only those above it:

``model``       what goes in and comes out (files, parameters, result, errors)
``reading``     raw files read ahead in background threads, bounded in memory
``calibrate``   master calibrations (cached per process) and calibrated frames
``shifts``      Fourier sub-pixel shifts and star-centred crops
``centre``      coarse star centre from the waffle pattern
``angles``      frame times and parallactic angles
``photometry``  PSF width, aperture flux, frame quality, off-axis PSF and stellar flux
``irdis``       the IRDIS dual-band sequence
``ifs``         the IFS sequence (spectra positions, wavelengths, extraction, resampling)
``sequence``    :func:`preprocess_observation` and the :class:`Preprocess` step
``products``    the FITS products
"""

from .model import (
    CalibratedObservation,
    FrameQuality,
    ObservationFiles,
    PreprocessingError,
    PreprocessParameters,
    ReducedCalibration,
)
from .photometry import aperture_flux
from .products import write_products
from .sequence import Preprocess, preprocess_observation

__all__ = [
    "CalibratedObservation",
    "FrameQuality",
    "ObservationFiles",
    "Preprocess",
    "PreprocessParameters",
    "PreprocessingError",
    "ReducedCalibration",
    "aperture_flux",
    "preprocess_observation",
    "write_products",
]
