"""The pre-processing step: which instrument mode, the files read in the order they are used."""

from __future__ import annotations

from pathlib import Path

from ..instruments import SphereIfs, SphereIrdis, by_name
from ..steps import Step
from .ifs import preprocess_ifs_observation
from .irdis import preprocess_irdis
from .model import CalibratedObservation, ObservationFiles, PreprocessingError, PreprocessParameters
from .reading import Reader, science_headers


def preprocess_observation(
    files: ObservationFiles, params: PreprocessParameters = PreprocessParameters()
) -> CalibratedObservation:
    """Pre-process one IRDIS DBI observation (see the module docstring).

    Raises
    ------
    PreprocessingError
        Nothing can be produced (no readable science frame, unsupported instrument).
    """
    instrument = by_name(files.instrument)
    if instrument not in (SphereIrdis, SphereIfs):
        raise PreprocessingError(
            f"pre-processing of {files.instrument} raw frames is not implemented "
            "(SPHERE IRDIS DBI and IFS only; register calibrated cubes with "
            "hcdc register-reduced)"
        )
    # every input in the order it is used, read ahead (a few files at a time) while the calibrations
    # are computed; the science files are streamed through their crops, only their headers are
    # read up front (time order, shape, detector windows)
    order: list[Path] = []
    for mapping in (files.backgrounds, files.darks):
        for _dit_s, paths in sorted(mapping.items()):
            order.extend(paths)
    order.extend(files.flats)
    for _dit_s, paths in sorted(files.skies.items()):
        order.extend(paths)
    order.extend([*files.specpos, *files.wave])
    problems: list[str] = []
    heads = science_headers(files.science, problems)
    order.extend([*files.center, *(Path(h.path) for h in heads), *files.flux])
    reader = Reader([Path(p) for p in order])
    try:
        if instrument is SphereIfs:
            return preprocess_ifs_observation(files, params, reader, heads, problems)
        return preprocess_irdis(files, params, instrument, reader, heads, problems)
    finally:
        reader.close()


class Preprocess(Step):
    """Step: raw IRDIS DBI observation -> calibrated ADI cube (:func:`preprocess_observation`)."""

    name = "preprocess"
    #: 2: the star centre's and the star flux's uncertainties measured and recorded (issue 18)
    version = "2"
    Parameters = PreprocessParameters
    inputs = ("observation_files",)
    outputs = ("cube", "derotation_deg", "psf", "frames")

    def run(self, params: PreprocessParameters, **inputs) -> CalibratedObservation:
        return preprocess_observation(inputs["observation_files"], params)
