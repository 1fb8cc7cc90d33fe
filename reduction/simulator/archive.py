"""Render the planned files into a raw SPHERE archive and write its truth."""

from __future__ import annotations

import contextlib
import hashlib
import math
import time as _time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from reduction.conventions import sky_to_frame_xy
from reduction.instruments.base import FrameKind
from reduction.instruments.sphere import SphereIfs, SphereIrdis

from . import ifs as ifs_model
from .catalogue import Target
from .detector import DetectorModel, DetectorView, Readout, ifs_readout, irdis_readout, make_detector
from .headers import WAFFLE_AMPLITUDE_UM, WAFFLE_ORIENTATION, fits_bytes, header_cards
from .optics import PUPIL_DIAMETER_M, WAFFLE_CPP, Imager, ScreenGenerator, make_pupil, waffle_opd
from .parameters import SimulationParameters
from .schedule import (
    IFS_THROUGHPUT,
    IRDIS_THROUGHPUT,
    ArchivePlan,
    CalSequencePlan,
    FilePlan,
    NightPlan,
    ObservationPlan,
    background_rates,
    build_plan,
    nd_transmission,
    rng_for,
    star_rate,
)
from .truth import (
    ASSOCIATION_RULES,
    SCHEMA_VERSION,
    CalibrationMatch,
    CalibrationSequenceTruth,
    CompanionTruth,
    DegradedFrame,
    DetectorTruth,
    ExpectedCalibrations,
    ExpectedCounts,
    FileTruth,
    NightTruth,
    ObservationTruth,
    ProgrammeTruth,
    SimulationTruth,
    TargetTruth,
    load_truth,
)

#: IRDIS detector (Hawaii-2RG): e-/ADU, read noise (e-), bias level (ADU), median dark current (e-/s).
IRDIS_DETECTOR = dict(gain=1.75, read_noise=10.0, bias=1000.0, dark_current=0.05)
IFS_DETECTOR = dict(gain=1.8, read_noise=9.0, bias=1000.0, dark_current=0.04)
#: Lamp count rates (e-/s/pixel) of the flat-field lamps.
IRDIS_LAMP_E_S = 9000.0
IFS_LAMP_E_S = 5000.0
#: Quasi-static aberrations: rms of the night's static OPD and of its slowly evolving part (m).
STATIC_RMS_M = 35e-9
EVOLVING_RMS_M = 4e-9
EVOLVING_PERIOD_H = 3.0
STATIC_FINE_GRID = 256
COMPANION_STAMP = 31


@contextlib.contextmanager
def _blas_threads(n: int | None):
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


class _OpticalSetup:
    """Pupil, imagers and screen generator of one IRDIS filter in one read-out."""

    def __init__(self, filter_name: str, readout: Readout, psf_box: int, pupils: dict[int, Any]):
        flt = SphereIrdis.filters[filter_name]
        self.filter = filter_name
        self.scale = SphereIrdis.pixel_scale_arcsec(filter_name)
        ny, _ = readout.shape
        self.box_size = min(max(w.nx for w in readout.windows), ny, psf_box)
        lam_min = min(flt.wavelengths_um)
        need = self.box_size * self.scale / (lam_min * 1e-6 / PUPIL_DIAMETER_M * 206264.806)
        npup = max(64, int(math.ceil(need / 8.0)) * 8)
        if npup not in pupils:
            pupil = make_pupil(npup)
            pupils[npup] = (pupil, ScreenGenerator(pupil))
        self.pupil, self.screens = pupils[npup]
        self.npup = npup
        self.bands = [
            (wl, width, Imager(self.pupil, wl, self.scale), readout.column_offset(k), readout.windows[k].nx)
            for k, (wl, width) in enumerate(zip(flt.wavelengths_um, flt.widths_um))
        ]


class Renderer:
    """Turns :class:`FilePlan` objects into raw data cubes."""

    def __init__(self, params: SimulationParameters, plan: ArchivePlan):
        self.params = params
        self.plan = plan
        self.irdis_readout = irdis_readout(params.window)
        self.ifs_readout = ifs_readout(params.effective_ifs_window)
        self.irdis_detector = make_detector(
            "IRDIS", (1024, 2048), rng_for(params.seed, "detector", "IRDIS"), halves=2, **IRDIS_DETECTOR
        )
        self.views = {"IRDIS": DetectorView(self.irdis_detector, self.irdis_readout)}
        self.ifs_detector: DetectorModel | None = None
        if any(o.arm == "IFS" for o in plan.observations):
            self.ifs_detector = make_detector(
                "IFS", (2048, 2048), rng_for(params.seed, "detector", "IFS"), **IFS_DETECTOR
            )
            self.views["IFS"] = DetectorView(self.ifs_detector, self.ifs_readout)
        self._pupils: dict[int, Any] = {}
        self._optics: dict[str, _OpticalSetup] = {}
        self._static: dict[tuple[str, int], np.ndarray] = {}
        self._ifs_geometry: ifs_model.IfsGeometry | None = None
        self._ifs_speckles: dict[str, np.ndarray] = {}
        self._burst: dict[str, np.ndarray] = {}
        self.burst_pixels: dict[str, list[tuple[int, int]]] = {}
        self._prepare_bursts()

    # -- shared pieces ------------------------------------------------------------------------------
    def readout(self, arm: str) -> Readout:
        return self.irdis_readout if arm == "IRDIS" else self.ifs_readout

    def optics(self, filter_name: str) -> _OpticalSetup:
        if filter_name not in self._optics:
            self._optics[filter_name] = _OpticalSetup(
                filter_name, self.irdis_readout, self.params.psf_box, self._pupils
            )
        return self._optics[filter_name]

    def _static_screens(self, night: NightPlan, setup: _OpticalSetup) -> np.ndarray:
        """(3, npup, npup): the night's static OPD and two evolving modes, same physical screen for all grids."""
        key = (night.night.isoformat(), setup.npup)
        if key not in self._static:
            fine_key = (night.night.isoformat(), -1)
            if fine_key not in self._static:
                rng = rng_for(self.params.seed, "static", night.night.isoformat())
                fine_pupil = make_pupil(STATIC_FINE_GRID, oversample=1)
                gen = ScreenGenerator(fine_pupil)
                s0 = gen.static(rng, STATIC_RMS_M)[0]
                s12 = gen.static(rng, EVOLVING_RMS_M, count=2)
                self._static[fine_key] = np.stack([s0, s12[0], s12[1]])
            fine = self._static[fine_key]
            zoom = setup.npup / STATIC_FINE_GRID
            self._static[key] = np.stack([ndimage.zoom(s, zoom, order=1) for s in fine]).astype(np.float32)
        return self._static[key]

    def _prepare_bursts(self) -> None:
        """Transient hot pixels (0.4 % of the read-out, 50-2000 e-/s) in the flagged dark sequences."""
        for seq in self.plan.calibrations:
            if "hot_pixel_burst" in seq.flags:
                rng = rng_for(self.params.seed, "burst", seq.seq_id)
                shape = self.irdis_readout.shape
                n = max(60, int(0.004 * shape[0] * shape[1]))
                flat_index = rng.choice(shape[0] * shape[1], size=n, replace=False)
                view = np.zeros(shape, dtype=np.float32)
                view.flat[flat_index] = np.exp(rng.uniform(np.log(50.0), np.log(2000.0), n)).astype(np.float32)
                self._burst[seq.seq_id] = view
                fy, fx = np.nonzero(view)
                det_x = fx.copy()
                for index, w in enumerate(self.irdis_readout.windows):
                    off = self.irdis_readout.column_offset(index)
                    sel = (fx >= off) & (fx < off + w.nx)
                    det_x[sel] = fx[sel] - off + w.x0
                det_y = fy + self.irdis_readout.windows[0].y0
                self.burst_pixels[seq.seq_id] = [(int(x), int(y)) for x, y in zip(det_x, det_y)]

    def background_map(self, arm: str, f: FilePlan, include_sky: bool, include_thermal: bool = True) -> np.ndarray:
        """Expected e-/s per pixel of the backgrounds (thermal, sky), band by band."""
        readout = self.readout(arm)
        ny, nx = readout.shape
        out = np.zeros((ny, nx), dtype=np.float32)
        if arm == "IRDIS":
            wls = SphereIrdis.filters[f.filter].wavelengths_um
            for k, wl in enumerate(wls):
                thermal, sky = background_rates(wl)
                rate = (thermal if include_thermal else 0.0) + (sky if include_sky else 0.0)
                out[:, readout.column_offset(k) : readout.column_offset(k) + readout.windows[k].nx] = rate
        else:
            lo, hi = SphereIfs.filters[f.filter].wavelengths_um
            thermal, sky = background_rates((lo + hi) / 2)
            out[:] = 0.3 * ((thermal if include_thermal else 0.0) + (sky if include_sky else 0.0))
        return out

    # -- one file -----------------------------------------------------------------------------------
    def render(self, f: FilePlan) -> np.ndarray:
        view = self.views[f.arm]
        ny, nx = view.readout.shape
        if self.params.headers_only:
            return np.full((f.ndit, ny, nx), int(view.model.bias_adu), dtype=np.uint16)
        rng = rng_for(self.params.seed, "file", f.name) if self.params.noise else None
        role = f.role
        if role == FrameKind.DARK:
            extra = self._burst.get(f.calseq.seq_id) if f.calseq is not None else None
            return view.expose(rng, None, f.dit, f.ndit, extra_dark=extra)
        if role == FrameKind.BACKGROUND:
            return view.expose(rng, self.background_map(f.arm, f, include_sky=False) * f.dit, f.dit, f.ndit)
        if role == FrameKind.FLAT:
            lamp = IRDIS_LAMP_E_S if f.arm == "IRDIS" else IFS_LAMP_E_S
            photo = self.background_map(f.arm, f, include_sky=False) + np.float32(lamp)
            return view.expose(rng, photo * f.dit, f.dit, f.ndit)
        if role == FrameKind.SKY:
            return view.expose(rng, self.background_map(f.arm, f, include_sky=True) * f.dit, f.dit, f.ndit)
        if role in (FrameKind.WAVE, FrameKind.SPECPOS):
            geom = self.ifs_geometry()
            spectra = ifs_model.lamp_spectra(geom, f.filter, role.value, 800.0, f.dit)
            photo = geom.paint(np.ascontiguousarray(spectra)) + self.background_map(f.arm, f, False) * f.dit
            return view.expose(rng, photo, f.dit, f.ndit)
        if f.arm == "IRDIS":
            return view.expose(rng, self._irdis_scene(f), f.dit, f.ndit)
        return view.expose(rng, self._ifs_scene(f), f.dit, f.ndit)

    # -- IRDIS on-sky frames --------------------------------------------------------------------------
    def _irdis_scene(self, f: FilePlan):
        """Yield the expected photo-electrons of each frame (ny, nx) of an IRDIS on-sky file."""
        obs = f.observation
        assert obs is not None
        night = self._night(obs)
        setup = self.optics(obs.filter)
        readout = self.irdis_readout
        ny, nx = readout.shape
        bg = self.background_map("IRDIS", f, include_sky=True) * np.float32(f.dit)
        target = obs.ob.target
        # where each companion is at this observation's epoch (orbit or background track)
        positions = [(comp, comp.position_at(target, obs.mid_mjd())) for comp in target.companions]
        centres = obs.flux_centre if f.role == FrameKind.FLUX else obs.star_centre
        coronagraph = f.role != FrameKind.FLUX
        rng = rng_for(self.params.seed, "optics", f.name)
        static = self._static_screens(night, setup) if self.params.aberrations else None
        waffle = waffle_opd(setup.pupil, 2 * WAFFLE_AMPLITUDE_UM * 1e-6) if f.role == FrameKind.CENTER else None
        rates = [
            star_rate(target, wl, width, IRDIS_THROUGHPUT) * nd_transmission(f.nd, wl) for wl, width, *_ in setup.bands
        ]
        offset = SphereIrdis.derotation_offset_deg()
        for i, t_mid in enumerate(f.frame_mid_times()):
            degraded = f.degraded.get(i, {})
            transmission = float(degraded.get("transmission", 1.0))
            n_sub = self.params.ao_realisations if self.params.aberrations else 1
            if self.params.aberrations:
                hours = (t_mid - obs.ob.start).total_seconds() / 3600.0
                phase = 2 * math.pi * hours / EVOLVING_PERIOD_H
                base = static[0] + math.cos(phase) * static[1] + math.sin(phase) * static[2]
                if degraded.get("reason") == "ao_loop_open":
                    turb = setup.screens.open_loop(rng, night.seeing_at(t_mid), n_sub)
                else:
                    turb = setup.screens.ao_residuals(
                        rng,
                        night.seeing_at(t_mid),
                        night.tau0_at(t_mid),
                        night.wind_at(t_mid),
                        obs.wind_angle_rad,
                        n_sub,
                    )
                opd = turb + base[None]
            else:
                opd = np.zeros((1, setup.npup, setup.npup), dtype=np.float32)
            if waffle is not None:
                opd = opd + waffle[None]
            alpha = f.frame_parang[i] + offset
            frame = bg.copy()
            for k, (wl, width, imager, col0, wpx) in enumerate(setup.bands):
                field = imager.field(opd)
                xs, ys = readout.detector_to_file(centres[k][0], centres[k][1], k)
                bx0, by0, bnx, bny = self._box(setup, xs, ys, col0, wpx, ny)
                star_field = imager.coronagraph(field) if coronagraph else field
                img = imager.image(star_field, bny, bnx, (ys - by0, xs - bx0))
                e_star = rates[k] * f.dit * transmission
                frame[by0 : by0 + bny, bx0 : bx0 + bnx] += img * np.float32(e_star)
                for comp, (sep_arcsec, pa_deg) in positions:
                    contrast = self._contrast(comp, obs.filter, k, wl)
                    sep_px = sep_arcsec / setup.scale
                    cx, cy = sky_to_frame_xy(sep_px, pa_deg, alpha, (centres[k][1], centres[k][0]))
                    cxf, cyf = readout.detector_to_file(float(cx), float(cy), k)
                    self._add_stamp(frame, imager, field, cxf, cyf, col0, wpx, e_star * contrast)
            yield frame

    @staticmethod
    def _contrast(comp, filter_name: str, band: int, wavelength_um: float) -> float:
        if filter_name in comp.contrast:
            return float(comp.contrast[filter_name][band])
        return comp.contrast_at(wavelength_um)

    @staticmethod
    def _box(setup: _OpticalSetup, xs: float, ys: float, col0: int, wpx: int, ny: int) -> tuple[int, int, int, int]:
        size = setup.box_size
        bnx = min(size, wpx)
        bny = min(size, ny)
        bx0 = int(min(max(round(xs) - bnx // 2, col0), col0 + wpx - bnx))
        by0 = int(min(max(round(ys) - bny // 2, 0), ny - bny))
        return bx0, by0, bnx, bny

    @staticmethod
    def _add_stamp(
        frame: np.ndarray, imager: Imager, field: np.ndarray, x: float, y: float, col0: int, wpx: int, electrons: float
    ) -> None:
        half = COMPANION_STAMP // 2
        sx0, sy0 = int(round(x)) - half, int(round(y)) - half
        ny = frame.shape[0]
        x_lo, x_hi = max(sx0, col0), min(sx0 + COMPANION_STAMP, col0 + wpx)
        y_lo, y_hi = max(sy0, 0), min(sy0 + COMPANION_STAMP, ny)
        if x_lo >= x_hi or y_lo >= y_hi:
            return
        stamp = imager.image(field, COMPANION_STAMP, COMPANION_STAMP, (y - sy0, x - sx0))
        frame[y_lo:y_hi, x_lo:x_hi] += np.float32(electrons) * stamp[y_lo - sy0 : y_hi - sy0, x_lo - sx0 : x_hi - sx0]

    def _night(self, obs: ObservationPlan) -> NightPlan:
        for night in self.plan.nights:
            if night.night == obs.ob.night:
                return night
        raise KeyError(obs.ob.night)

    # -- IFS on-sky frames ----------------------------------------------------------------------------
    def ifs_geometry(self) -> ifs_model.IfsGeometry:
        if self._ifs_geometry is None:
            from .detector import IFS_NOMINAL_CENTRE

            self._ifs_geometry = ifs_model.IfsGeometry(self.ifs_readout, IFS_NOMINAL_CENTRE)
        return self._ifs_geometry

    def _ifs_scene(self, f: FilePlan) -> np.ndarray:
        obs = f.observation
        assert obs is not None
        night = self._night(obs)
        geom = self.ifs_geometry()
        wl = ifs_model.channel_wavelengths(obs.filter)
        step = float(wl[1] - wl[0])
        target = obs.ob.target
        positions = [(comp, comp.position_at(target, obs.mid_mjd())) for comp in target.companions]
        rates = np.array([star_rate(target, w, step, IFS_THROUGHPUT) * nd_transmission(f.nd, w) for w in wl])
        key = night.night.isoformat()
        if key not in self._ifs_speckles:
            self._ifs_speckles[key] = ifs_model.speckle_pattern(rng_for(self.params.seed, "ifs-speckles", key))
        speckles = self._ifs_speckles[key] if self.params.aberrations else None
        bg = self.background_map("IFS", f, include_sky=True) * np.float32(f.dit)
        kind = {FrameKind.SCIENCE: "science", FrameKind.CENTER: "center", FrameKind.FLUX: "flux"}[f.role]
        offset = SphereIfs.derotation_offset_deg()
        u0, v0 = obs.ifs_lenslet_centre
        out = np.empty((f.ndit,) + geom.shape, dtype=np.float32)
        for i, t_mid in enumerate(f.frame_mid_times()):
            if self.params.aberrations:
                seeing, tau0_ms = night.seeing_at(t_mid), night.tau0_at(t_mid) * 1e3
                sigma_nm = 50.0 + 40.0 * max(seeing - 0.5, 0.0) + 150.0 / tau0_ms
                strehl = np.exp(-((2 * np.pi * sigma_nm * 1e-3 / wl) ** 2))
            else:
                strehl = np.ones_like(wl)
            alpha = f.frame_parang[i] + offset
            comps = []
            for comp, (sep_arcsec, pa_deg) in positions:
                sep = sep_arcsec * 1000.0 / ifs_model.LENSLET_MAS
                cu, cv = sky_to_frame_xy(sep, pa_deg, alpha, (v0, u0))
                comps.append((float(cu), float(cv), np.array([comp.contrast_at(w) for w in wl])))
            spectra = ifs_model.scene_spectra(
                geom, wl, rates, f.dit, kind, (u0, v0), speckles, comps, strehl[None, :] if np.ndim(strehl) else strehl
            )
            out[i] = geom.paint(spectra) + bg
        return out


# -- truth --------------------------------------------------------------------------------------------
def _dit_key(dit: float) -> str:
    return f"{round(dit, 2):.2f}"


def _nearest(candidates: list[tuple[float, str, list[str], tuple[str, ...]]], when: float) -> CalibrationMatch | None:
    """Nearest (mid-MJD, id, files, flags) to ``when``; None when there is none."""
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda c: (abs(c[0] - when), c[1]))
    best = ranked[0]
    runner = round(abs(ranked[1][0] - when) * 24.0, 4) if len(ranked) > 1 else None
    return CalibrationMatch(best[1], tuple(best[2]), None, best[3], round(abs(best[0] - when) * 24.0, 4), runner)


def expected_calibrations(obs: ObservationPlan, plan: ArchivePlan) -> ExpectedCalibrations:
    when = obs.mid_mjd()
    seqs = [s for s in plan.calibrations if s.arm == obs.arm]
    dits = sorted({round(f.dit, 2) for f in obs.sequence_files})
    darks, darks_ok, bgs, skies = {}, {}, {}, {}

    def cands(items: list[CalSequencePlan]) -> list[tuple[float, str, list[str], tuple[str, ...]]]:
        return [(s.mid_mjd(), s.seq_id, [f.name for f in s.files], tuple(s.flags)) for s in items]

    for dit in dits:
        key = _dit_key(dit)
        same = [s for s in seqs if len(s.dits) == 1 and round(s.dits[0], 2) == dit]
        m = _nearest(cands([s for s in same if s.role == FrameKind.DARK]), when)
        if m:
            darks[key] = CalibrationMatch(m.sequence, m.files, dit, m.flags, m.distance_h, m.runner_up_h)
        m = _nearest(cands([s for s in same if s.role == FrameKind.DARK and not s.flags]), when)
        if m:
            darks_ok[key] = CalibrationMatch(m.sequence, m.files, dit, m.flags, m.distance_h, m.runner_up_h)
        m = _nearest(cands([s for s in same if s.role == FrameKind.BACKGROUND and s.filter == obs.filter]), when)
        if m:
            bgs[key] = CalibrationMatch(m.sequence, m.files, dit, m.flags, m.distance_h, m.runner_up_h)
        sky_sets = []
        for other in plan.observations:
            if other.arm != obs.arm or other.filter != obs.filter:
                continue
            sky = [f for f in other.files_of(FrameKind.SKY) if round(f.dit, 2) == dit]
            if sky:
                sky_sets.append(
                    (float(np.mean([f.mid_mjd() for f in sky])), f"sky:{other.obs_id}", [f.name for f in sky], ())
                )
        m = _nearest(sky_sets, when)
        if m:
            skies[key] = CalibrationMatch(m.sequence, m.files, dit, m.flags, m.distance_h, m.runner_up_h)
    flats = _nearest(cands([s for s in seqs if s.role == FrameKind.FLAT and s.filter == obs.filter]), when)
    waves = specpos = None
    if obs.arm == "IFS":
        waves = _nearest(cands([s for s in seqs if s.role == FrameKind.WAVE and s.filter == obs.filter]), when)
        specpos = _nearest(cands([s for s in seqs if s.role == FrameKind.SPECPOS and s.filter == obs.filter]), when)
    return ExpectedCalibrations(darks, darks_ok, bgs, skies, flats, waves, specpos)


def _add_months(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    import calendar

    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _observation_truth(obs: ObservationPlan, plan: ArchivePlan, renderer: Renderer) -> ObservationTruth:
    target: Target = obs.ob.target
    readout = renderer.readout(obs.arm)
    if obs.arm == "IRDIS":
        flt = SphereIrdis.filters[obs.filter]
        wls = tuple(flt.wavelengths_um)
        widths = flt.widths_um
        scale = SphereIrdis.pixel_scale_arcsec(obs.filter)
        offset = SphereIrdis.derotation_offset_deg()
        throughput = IRDIS_THROUGHPUT
        star_file = tuple(readout.detector_to_file(x, y, k) for k, (x, y) in enumerate(obs.star_centre))
        flux_file = tuple(readout.detector_to_file(x, y, k) for k, (x, y) in enumerate(obs.flux_centre))
        comp_wls = wls
    else:
        wls = tuple(float(w) for w in ifs_model.channel_wavelengths(obs.filter))
        widths = (wls[1] - wls[0],) * len(wls)
        scale = SphereIfs.pixel_scale_arcsec()
        offset = SphereIfs.derotation_offset_deg()
        throughput = IFS_THROUGHPUT
        star_file = tuple(readout.detector_to_file(x, y, 0) for x, y in obs.star_centre)
        flux_file = tuple(readout.detector_to_file(x, y, 0) for x, y in obs.flux_centre)
        comp_wls = wls
    lam_d_px = [wl * 1e-6 / PUPIL_DIAMETER_M * 206264.806 / scale for wl in (wls if obs.arm == "IRDIS" else wls[:1])]
    companions = []
    for comp in target.companions:
        sep_arcsec, pa_deg = comp.position_at(target, obs.mid_mjd())
        if obs.arm == "IRDIS" and obs.filter in comp.contrast:
            contrast = tuple(float(c) for c in comp.contrast[obs.filter])
        else:
            contrast = tuple(round(comp.contrast_at(w), 12) for w in comp_wls)
        companions.append(
            CompanionTruth(
                comp.name,
                round(sep_arcsec, 6),
                round(pa_deg, 4),
                comp.kind,
                contrast,
                round(sep_arcsec / scale, 4),
            )
        )
    files = {
        role: tuple(f.name for f in obs.files_of(kind))
        for role, kind in (
            ("science", FrameKind.SCIENCE),
            ("center", FrameKind.CENTER),
            ("flux", FrameKind.FLUX),
            ("sky", FrameKind.SKY),
        )
    }
    seq = obs.sequence_files
    seeing = [v for f in seq for v in (f.seeing_start, f.seeing_end)]
    airmasses = [v for f in seq for v in (f.airmass_start, f.airmass_end)]
    parangs = [v for f in seq for v in (f.parang_start, f.parang_end)]
    sci = obs.files_of(FrameKind.SCIENCE)
    degraded = tuple(
        DegradedFrame(f.name, i, d["reason"], d.get("detail", ""))
        for f in obs.files
        for i, d in sorted(f.degraded.items())
    )
    release = _add_months(obs.ob.night, obs.ob.programme.proprietary_months)
    waffle = {
        "amplitude_um": WAFFLE_AMPLITUDE_UM,
        "orientation": WAFFLE_ORIENTATION,
        "spot_radius_lambda_over_d": round(WAFFLE_CPP * math.sqrt(2.0), 4),
        "spot_radius_px": tuple(round(WAFFLE_CPP * math.sqrt(2.0) * lod, 4) for lod in lam_d_px),
        "spot_angles_deg": (45.0, 135.0, 225.0, 315.0),
        "note": "angles counter-clockwise from +x in the raw frame (pupil-fixed)",
    }
    ndit = {
        role: (obs.files_of(kind)[0].ndit if obs.files_of(kind) else 0)
        for role, kind in (
            ("science", FrameKind.SCIENCE),
            ("center", FrameKind.CENTER),
            ("flux", FrameKind.FLUX),
            ("sky", FrameKind.SKY),
        )
    }
    n_frames = {
        role: sum(f.ndit for f in obs.files_of(kind))
        for role, kind in (
            ("science", FrameKind.SCIENCE),
            ("center", FrameKind.CENTER),
            ("flux", FrameKind.FLUX),
            ("sky", FrameKind.SKY),
        )
    }
    return ObservationTruth(
        obs_id=obs.obs_id,
        instrument=obs.instrument,
        arm=obs.arm,
        programme=obs.ob.programme.prog_id,
        target=target.name,
        night=obs.ob.night.isoformat(),
        ob_id=obs.ob.ob_id,
        ob_name=obs.ob.name,
        template=obs.tpl_id,
        mode="DBI" if obs.arm == "IRDIS" else obs.filter,
        mode_combination=obs.mode_combination,
        filter=obs.filter,
        wavelengths_um=tuple(wls),
        pixel_scale_arcsec=scale,
        coronagraph=obs.coronagraph,
        science_dit_s=obs.science_dit,
        science_nd=obs.science_nd,
        center_dit_s=obs.science_dit,
        flux_dit_s=obs.flux_dit,
        flux_nd=obs.flux_nd,
        nd_transmission=tuple(round(nd_transmission(obs.flux_nd, w), 8) for w in wls),
        science_nd_transmission=tuple(round(nd_transmission(obs.science_nd, w), 8) for w in wls),
        ndit=ndit,
        files=files,
        n_frames=n_frames,
        start_utc=min(f.start for f in obs.files).isoformat(),
        end_utc=max(f.end for f in obs.files).isoformat(),
        mid_mjd=round(obs.mid_mjd(), 8),
        release_date=release.isoformat(),
        star_centre_xy=tuple((round(x, 4), round(y, 4)) for x, y in obs.star_centre),
        star_centre_file_xy=tuple((round(x, 4), round(y, 4)) for x, y in star_file),
        flux_centre_xy=tuple((round(x, 4), round(y, 4)) for x, y in obs.flux_centre),
        flux_centre_file_xy=tuple((round(x, 4), round(y, 4)) for x, y in flux_file),
        seq_coro_xy=obs.seq_coro,
        waffle=waffle,
        star_flux_e_per_s=tuple(round(star_rate(target, w, d, throughput), 3) for w, d in zip(wls, widths)),
        conditions={
            "seeing_arcsec": round(float(np.mean(seeing)), 4),
            "seeing_range_arcsec": [min(seeing), max(seeing)],
            "tau0_ms": round(float(np.mean([f.tau0_s for f in seq])) * 1e3, 4),
            "airmass": round(float(np.mean(airmasses)), 4),
            "airmass_range": [round(min(airmasses), 4), round(max(airmasses), 4)],
            "wind_ms": round(float(np.mean([f.wind_ms for f in seq])), 4),
            "source": "means of the TEL AMBI/AIRM values written in the OBJECT/CENTER/FLUX headers",
        },
        parang_deg={
            "start": round(sci[0].parang_start, 4) if sci else None,
            "end": round(sci[-1].parang_end, 4) if sci else None,
            "min": round(min(parangs), 4),
            "max": round(max(parangs), 4),
            "field_rotation": round(abs(sci[-1].parang_end - sci[0].parang_start), 4) if sci else 0.0,
        },
        derotation_offset_deg=offset,
        companions=tuple(companions),
        degraded_frames=degraded,
        expected_calibrations=expected_calibrations(obs, plan),
        ifs_lenslet_centre=obs.ifs_lenslet_centre,
    )


def _file_truth(f: FilePlan, rel: str, sha: str | None) -> FileTruth:
    derot = ()
    if f.observation is not None:
        offset = SphereIrdis.derotation_offset_deg() if f.arm == "IRDIS" else SphereIfs.derotation_offset_deg()
        derot = tuple(round(q + offset, 6) for q in f.frame_parang)
    return FileTruth(
        name=f.name,
        path=rel,
        night=f.night.isoformat(),
        instrument=f.instrument,
        kind=f.role.value,
        dpr_type=f.dpr_type,
        dit_s=f.dit,
        ndit=f.ndit,
        date_obs=f.date_obs,
        observation=f.observation.obs_id if f.observation is not None else None,
        calibration_sequence=f.calseq.seq_id if f.calseq is not None else None,
        frame_mid_mjd=tuple(round(m, 9) for m in f.frame_mid_mjd),
        frame_parang_deg=tuple(round(q, 6) for q in f.frame_parang),
        frame_derotation_deg=derot,
        degraded_frames=tuple(sorted(f.degraded)),
        sha256=sha,
    )


def _expected_counts(plan: ArchivePlan) -> ExpectedCounts:
    files = plan.files
    observations = plan.observations
    return ExpectedCounts(
        nights=len(plan.nights),
        programmes=len({ob.programme.prog_id for n in plan.nights for ob in n.obs}),
        targets=len({ob.target.name for n in plan.nights for ob in n.obs}),
        observations=len(observations),
        observations_by_instrument=dict(sorted(Counter(o.instrument for o in observations).items())),
        observing_blocks=sum(len(n.obs) for n in plan.nights),
        files=len(files),
        files_by_instrument=dict(sorted(Counter(f.instrument for f in files).items())),
        files_by_dpr_type=dict(sorted(Counter(f.dpr_type for f in files).items())),
        files_by_night=dict(sorted(Counter(f.night.isoformat() for f in files).items())),
        frames=sum(f.ndit for f in files),
        calibration_sequences=len(plan.calibrations),
        calibration_sequences_by_kind=dict(sorted(Counter(s.role.value for s in plan.calibrations).items())),
        observation_ids=tuple(o.obs_id for o in observations),
    )


def _programme_truths(plan: ArchivePlan) -> tuple[ProgrammeTruth, ...]:
    out = []
    for prog in plan.programmes.values():
        nights = sorted({ob.night.isoformat() for n in plan.nights for ob in n.obs if ob.programme.key == prog.key})
        if prog.kind == "science" and not nights:
            continue
        policy = (
            "public at once (headers and calibrations)"
            if prog.kind == "calibration"
            else f"proprietary: release = night of observation + {prog.proprietary_months} months (ESO default)"
        )
        out.append(
            ProgrammeTruth(
                prog.prog_id,
                prog.kind,
                prog.title,
                prog.pi.username,
                prog.pi.full_name,
                prog.pi.name,
                tuple(p.username for p in prog.co_is),
                tuple(p.full_name for p in prog.co_is),
                prog.proprietary_months,
                policy,
                tuple(nights),
            )
        )
    return tuple(out)


def write_programmes_table(path: Path, programmes: tuple[ProgrammeTruth, ...]) -> None:
    """The "programme database export" read by ingest (astropy ECSV)."""
    from astropy.table import Table

    table = Table(
        rows=[
            (
                p.prog_id,
                p.pi,
                p.pi_name,
                p.pi_header_name,
                ",".join(p.co_is),
                ";".join(p.co_i_names),
                p.title,
                p.proprietary_months,
                p.kind,
            )
            for p in programmes
        ],
        names=(
            "prog_id",
            "pi",
            "pi_name",
            "pi_header_name",
            "co_is",
            "co_i_names",
            "title",
            "proprietary_months",
            "kind",
        ),
        dtype=(str, str, str, str, str, str, str, int, str),
    )
    table.meta["description"] = (
        "HC-DC programme database export (simulated): pi and co_is are HC-DC "
        "usernames; co_is is comma-separated; release = observation night + "
        "proprietary_months."
    )
    table.write(path, format="ascii.ecsv", overwrite=True)


# -- entry point -----------------------------------------------------------------------------------
def simulate_archive(
    out_dir: Path | str,
    nights: int = 3,
    seed: int = 0,
    window: int | None = None,
    start_date: date = date(2026, 6, 1),
    progress: bool = False,
    frames_per_cube: int = 4,
    *,
    params: SimulationParameters | None = None,
    **overrides: Any,
) -> SimulationTruth:
    """Write a simulated raw SPHERE archive under ``out_dir`` and return its truth.

    Parameters
    ----------
    out_dir : path
        Created if needed. Raw files go to ``out_dir/raw/<night>/SPHER.<DATE-OBS>.fits``,
        the truth to ``out_dir/truth.json`` and ``out_dir/truth/``, the programme
        export to ``out_dir/programmes.ecsv``.
    nights, seed, window, start_date, frames_per_cube
        See :class:`SimulationParameters`; ignored when ``params`` is given.
    progress : bool
        Show a tqdm progress bar over the files.
    params : SimulationParameters, optional
        All parameters at once.
    **overrides
        Any other :class:`SimulationParameters` field (e.g. ``headers_only=True``,
        ``noise=False``, ``science_files_per_ob=2``).
    """
    t0 = _time.perf_counter()
    if params is None:
        params = SimulationParameters(
            nights=nights, seed=seed, window=window, start_date=start_date, frames_per_cube=frames_per_cube, **overrides
        )
    elif overrides:
        import dataclasses

        params = dataclasses.replace(params, **overrides)
    out = Path(out_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    plan = build_plan(params)
    files = plan.files
    file_truths: dict[str, FileTruth] = {}
    with _blas_threads(params.blas_threads):
        renderer = Renderer(params, plan)
        iterator: Any = files
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(files, desc="simulating SPHERE archive", unit="file")
        for f in iterator:
            rel = f"raw/{f.night.isoformat()}/{f.name}"
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data = renderer.render(f)
            blob = fits_bytes(header_cards(f, renderer.readout(f.arm)), data)
            path.write_bytes(blob)
            sha = hashlib.sha256(blob).hexdigest()
            file_truths[f.name] = _file_truth(f, rel, sha)
    renderer.irdis_detector.write(out / "truth" / "flat_map.fits")
    if renderer.ifs_detector is not None:
        renderer.ifs_detector.write(out / "truth" / "flat_map_ifs.fits")
    truth = _assemble_truth(out, params, plan, renderer, file_truths, _time.perf_counter() - t0)
    truth.write(out / "truth.json")
    write_programmes_table(out / "programmes.ecsv", truth.programmes)
    # return exactly what a later load_truth(out_dir) gives (JSON types: lists in the free-form dicts)
    import dataclasses

    return dataclasses.replace(load_truth(out), elapsed_s=round(_time.perf_counter() - t0, 3))


def _detector_truth(model: DetectorModel, readout: Readout, maps_file: str, filters: dict) -> DetectorTruth:
    s = model.summary()
    return DetectorTruth(
        model.name,
        tuple(model.shape),
        model.gain_e_per_adu,
        model.read_noise_e,
        model.bias_adu,
        model.dark_current_e_s,
        model.flat_rms,
        s["n_hot"],
        s["n_dead"],
        maps_file,
        tuple((w.x0, w.y0, w.nx, w.ny) for w in readout.windows),
        filters,
    )


def _assemble_truth(
    out: Path,
    params: SimulationParameters,
    plan: ArchivePlan,
    renderer: Renderer,
    file_truths: dict[str, FileTruth],
    elapsed: float,
) -> SimulationTruth:
    observations = tuple(_observation_truth(o, plan, renderer) for o in plan.observations)
    calibs = []
    for seq in plan.calibrations:
        calibs.append(
            CalibrationSequenceTruth(
                seq.seq_id,
                seq.instrument,
                seq.arm,
                seq.role.value,
                seq.dpr_type,
                seq.night.isoformat(),
                seq.block,
                tuple(seq.dits),
                seq.filter,
                seq.ob_id,
                tuple(f.name for f in seq.files),
                round(seq.mid_mjd(), 8),
                seq.files[0].start.isoformat(),
                tuple(seq.flags),
                tuple(tuple(p) for p in renderer.burst_pixels.get(seq.seq_id, [])),
            )
        )
    targets = {ob.target.name: ob.target for n in plan.nights for ob in n.obs}
    target_truths = tuple(
        TargetTruth(
            **{k: v for k, v in t.to_dict().items() if k != "companions"}, companions=tuple(t.to_dict()["companions"])
        )
        for t in targets.values()
    )
    night_truths = tuple(
        NightTruth(
            n.night.isoformat(),
            n.archival,
            n.bad_seeing,
            n.calibrations_next_morning,
            round(n.seeing_arcsec, 4),
            round(n.tau0_ms, 4),
            round(n.wind_ms, 4),
            sum(len(ob.observations) for ob in n.obs),
            sum(1 for f in plan.files if f.night == n.night),
        )
        for n in plan.nights
    )
    bg = {}
    for filt in sorted({o.filter for o in plan.observations if o.arm == "IRDIS"}):
        bg[filt] = [
            {"wavelength_um": wl, "thermal_e_s": background_rates(wl)[0], "sky_e_s": background_rates(wl)[1]}
            for wl in SphereIrdis.filters[filt].wavelengths_um
        ]
    detectors = {
        "SPHERE-IRDIS": _detector_truth(renderer.irdis_detector, renderer.irdis_readout, "truth/flat_map.fits", bg),
    }
    if renderer.ifs_detector is not None:
        detectors["SPHERE-IFS"] = _detector_truth(
            renderer.ifs_detector, renderer.ifs_readout, "truth/flat_map_ifs.fits", {}
        )
    return SimulationTruth(
        root=str(out.resolve()),
        schema_version=SCHEMA_VERSION,
        generator="reduction.simulator",
        parameters=params.to_dict(),
        association_rules=dict(ASSOCIATION_RULES),
        programmes=_programme_truths(plan),
        targets=target_truths,
        nights=night_truths,
        observations=observations,
        calibration_sequences=tuple(calibs),
        files=file_truths,
        detectors=detectors,
        expected_counts=_expected_counts(plan),
        hot_pixel_burst=tuple(s.seq_id for s in plan.calibrations if "hot_pixel_burst" in s.flags),
        bad_seeing_nights=tuple(n.night.isoformat() for n in plan.nights if n.bad_seeing),
        elapsed_s=round(elapsed, 3),
    )
