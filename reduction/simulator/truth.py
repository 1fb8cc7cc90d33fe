"""The ground truth of a simulated archive: dataclasses, ``truth.json`` writer and loader.

The truth lives beside the raw data (``out_dir/truth.json``,
``out_dir/truth/flat_map.fits``, ``out_dir/truth/flat_map_ifs.fits``) and is
never written into a raw header. Conventions: pixel coordinates are 0-based
``(x, y)`` on the *full detector* (HC-DC convention; the ``*_file_xy``
variants are in the data array of the files, i.e. after windowing), angles in
degrees, position angles east of north, separations in arcsec, contrasts are
flux ratios to the star, times UTC ISO strings, nights the date of the evening
(noon-to-noon, Paranal local time UTC-4).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

#: Rules used to compute ``ObservationTruth.expected_calibrations`` (also written in truth.json).
ASSOCIATION_RULES = {
    "time_of_observation": "mean of the mid-exposure times of its OBJECT, OBJECT,CENTER and OBJECT,FLUX files",
    "time_of_calibration_sequence": "mean of the mid-exposure times of the files of the template",
    "darks": "DPR TYPE DARK, same instrument (arm), DIT rounded to 0.01 s, nearest sequence in time",
    "darks_excluding_flagged": "as darks, ignoring sequences flagged in the truth (hot-pixel burst)",
    "backgrounds": "DPR TYPE DARK,BACKGROUND, same arm, same DIT rounded to 0.01 s and same INS COMB IFLT "
    "(IRDIS) or INS2 COMB IFS (IFS), nearest sequence in time",
    "skies": "DPR TYPE SKY, same arm, same DIT rounded to 0.01 s and same filter, nearest set in time "
    "(a set = the SKY files of one OB with that DIT; its id is 'sky:<obs_id>')",
    "flats": "DPR TYPE FLAT,LAMP, same arm and filter (IRDIS INS COMB IFLT, IFS INS2 COMB IFS), nearest "
    "sequence in time, all its DITs",
    "waves": "IFS only: LAMP,WAVE, same INS2 COMB IFS, nearest in time",
    "specpos": "IFS only: SPECPOS,LAMP, same INS2 COMB IFS, nearest in time",
}


@dataclass(frozen=True)
class CompanionTruth:
    name: str
    separation_arcsec: float
    pa_deg: float
    kind: str
    #: contrast per band of the observation (IRDIS: 2 values; IFS: one per channel)
    contrast: tuple[float, ...] = ()
    separation_px: float | None = None


@dataclass(frozen=True)
class TargetTruth:
    name: str
    ra_deg: float
    dec_deg: float
    pm_ra_mas_yr: float
    pm_dec_mas_yr: float
    parallax_mas: float
    distance_pc: float
    spectral_type: str
    age_myr: float
    j_mag: float
    h_mag: float
    k_mag: float
    companions: tuple[dict, ...] = ()
    mass_msun: float = 1.0


@dataclass(frozen=True)
class ProgrammeTruth:
    prog_id: str
    kind: str  #: "science" or "calibration"
    title: str
    pi: str  #: username
    pi_name: str
    pi_header_name: str  #: as written in OBS PI-COI NAME
    co_is: tuple[str, ...]  #: usernames
    co_i_names: tuple[str, ...]
    proprietary_months: int
    release_policy: str
    nights: tuple[str, ...] = ()


@dataclass(frozen=True)
class NightTruth:
    night: str
    archival: bool
    bad_seeing: bool
    calibrations_next_morning: bool
    seeing_arcsec: float  #: the night's median seeing (model parameter)
    tau0_ms: float
    wind_ms: float
    n_observations: int
    n_files: int


@dataclass(frozen=True)
class DegradedFrame:
    file: str
    frame: int
    reason: str  #: "ao_loop_open" or "cloud"
    detail: str = ""


@dataclass(frozen=True)
class CalibrationMatch:
    sequence: str
    files: tuple[str, ...]
    dit_key: float | None = None
    flags: tuple[str, ...] = ()
    distance_h: float | None = None  #: time distance to the observation (hours)
    runner_up_h: float | None = None  #: distance of the next candidate (None: the only one); margin = this - distance


@dataclass(frozen=True)
class ExpectedCalibrations:
    darks: dict[str, CalibrationMatch] = field(default_factory=dict)  #: key "%.2f" % DIT
    darks_excluding_flagged: dict[str, CalibrationMatch] = field(default_factory=dict)
    backgrounds: dict[str, CalibrationMatch] = field(default_factory=dict)
    skies: dict[str, CalibrationMatch] = field(default_factory=dict)
    flats: CalibrationMatch | None = None
    waves: CalibrationMatch | None = None
    specpos: CalibrationMatch | None = None


@dataclass(frozen=True)
class ObservationTruth:
    obs_id: str  #: "<night>/<arm>/<OB id>"
    instrument: str  #: "SPHERE-IRDIS" / "SPHERE-IFS"
    arm: str
    programme: str
    target: str
    night: str
    ob_id: int
    ob_name: str
    template: str
    mode: str  #: INS1 MODE (DBI) or INS2 COMB IFS
    mode_combination: str  #: INS4 MODE: IRDIS_DBI, IRDIFS, IRDIFS_EXT
    filter: str
    wavelengths_um: tuple[float, ...]
    pixel_scale_arcsec: float
    coronagraph: str
    science_dit_s: float
    science_nd: str
    center_dit_s: float
    flux_dit_s: float
    flux_nd: str
    nd_transmission: tuple[float, ...]  #: per band, of the FLUX neutral density
    science_nd_transmission: tuple[float, ...]  #: per band, of the OBJECT/CENTER neutral density (1 if none)
    ndit: dict[str, int]
    files: dict[str, tuple[str, ...]]  #: "science", "center", "flux", "sky"
    n_frames: dict[str, int]
    start_utc: str
    end_utc: str
    mid_mjd: float
    release_date: str
    star_centre_xy: tuple[tuple[float, float], ...]  #: per band, full detector, coronagraphic frames
    star_centre_file_xy: tuple[tuple[float, float], ...]  #: per band, in the files' data arrays
    flux_centre_xy: tuple[tuple[float, float], ...]  #: per band, full detector, FLUX frames
    flux_centre_file_xy: tuple[tuple[float, float], ...]
    seq_coro_xy: tuple[float, float] | None  #: SEQ CORO XC/YC as written (1-based, not exact)
    waffle: dict[str, Any]
    star_flux_e_per_s: tuple[float, ...]  #: per band, detected e-/s without ND
    conditions: dict[str, Any]
    parang_deg: dict[str, float]
    derotation_offset_deg: float
    companions: tuple[CompanionTruth, ...]
    degraded_frames: tuple[DegradedFrame, ...]
    expected_calibrations: ExpectedCalibrations
    ifs_lenslet_centre: tuple[float, float] | None = None


@dataclass(frozen=True)
class CalibrationSequenceTruth:
    seq_id: str
    instrument: str
    arm: str
    kind: str  #: FrameKind value
    dpr_type: str
    night: str
    block: str  #: "afternoon" / "morning"
    dits: tuple[float, ...]
    filter: str
    ob_id: int
    files: tuple[str, ...]
    mid_mjd: float
    start_utc: str
    flags: tuple[str, ...] = ()
    burst_pixels_xy: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class FileTruth:
    name: str
    path: str  #: relative to the archive root
    night: str
    instrument: str
    kind: str
    dpr_type: str
    dit_s: float
    ndit: int
    date_obs: str
    observation: str | None = None
    calibration_sequence: str | None = None
    frame_mid_mjd: tuple[float, ...] = ()
    frame_parang_deg: tuple[float, ...] = ()
    frame_derotation_deg: tuple[float, ...] = ()
    degraded_frames: tuple[int, ...] = ()
    sha256: str | None = None


@dataclass(frozen=True)
class DetectorTruth:
    name: str
    shape: tuple[int, int]
    gain_e_per_adu: float
    read_noise_e: float
    bias_adu: float
    dark_current_e_s: float
    flat_rms: float
    n_hot: int
    n_dead: int
    maps_file: str  #: FITS with FLAT, DARK (e-/s), BIAS, HOT, DEAD extensions
    readout_windows: tuple[tuple[int, int, int, int], ...]  #: (x0, y0, nx, ny), 0-based
    background_e_s: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpectedCounts:
    """What the generator intended, counted on its plan (not on the headers)."""

    nights: int
    programmes: int  #: science programmes
    targets: int  #: distinct targets observed
    observations: int  #: (night, arm, OB id) groups
    observations_by_instrument: dict[str, int]
    observing_blocks: int
    files: int
    files_by_instrument: dict[str, int]
    files_by_dpr_type: dict[str, int]
    files_by_night: dict[str, int]
    frames: int
    calibration_sequences: int
    calibration_sequences_by_kind: dict[str, int]
    observation_ids: tuple[str, ...]


@dataclass(frozen=True)
class SimulationTruth:
    """Everything the generator knows and the archive must let HC-DC rediscover."""

    root: str
    schema_version: int
    generator: str
    parameters: dict[str, Any]
    association_rules: dict[str, str]
    programmes: tuple[ProgrammeTruth, ...]
    targets: tuple[TargetTruth, ...]
    nights: tuple[NightTruth, ...]
    observations: tuple[ObservationTruth, ...]
    calibration_sequences: tuple[CalibrationSequenceTruth, ...]
    files: dict[str, FileTruth]
    detectors: dict[str, DetectorTruth]
    expected_counts: ExpectedCounts
    hot_pixel_burst: tuple[str, ...]  #: calibration sequence ids
    bad_seeing_nights: tuple[str, ...]
    elapsed_s: float = 0.0

    # -- convenience ----------------------------------------------------------------------------
    def observation(self, obs_id: str) -> ObservationTruth:
        for obs in self.observations:
            if obs.obs_id == obs_id:
                return obs
        raise KeyError(obs_id)

    def path(self, name: str) -> Path:
        """Absolute path of a raw file from its name."""
        return Path(self.root) / self.files[name].path

    def sequence(self, seq_id: str) -> CalibrationSequenceTruth:
        for seq in self.calibration_sequences:
            if seq.seq_id == seq_id:
                return seq
        raise KeyError(seq_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``root`` and ``elapsed_s`` are left out (the file is relocatable and reproducible)."""
        out = _to_jsonable(dataclasses.asdict(self))
        out["root"] = "."
        out.pop("elapsed_s", None)
        return out

    def write(self, path: Path | str) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1, sort_keys=False)
            fh.write("\n")


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _build(tp: Any, data: Any) -> Any:
    """Rebuild typed values (dataclasses, tuples, dicts) from JSON data."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        return _build(non_none[0], data) if non_none else data
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _build(hints[f.name], data[f.name])
        return tp(**kwargs)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in data)
        if args:
            return tuple(_build(a, v) for a, v in zip(args, data))
        return tuple(data)
    if origin is dict:
        vt = args[1] if len(args) == 2 else Any
        return {k: _build(vt, v) for k, v in data.items()}
    if origin is list:
        return [_build(args[0], v) for v in data]
    return data


def load_truth(path: Path | str) -> SimulationTruth:
    """Load ``truth.json`` (give the file or the archive directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "truth.json"
    with open(path) as fh:
        data = json.load(fh)
    data["root"] = str(path.parent.resolve())
    return _build(SimulationTruth, data)
