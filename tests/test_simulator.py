"""The simulated SPHERE archive: headers, geometry, photometry, detector truth, determinism.

Every check measures the written FITS files (pixels or headers) and compares
them with the truth or with an independent computation, so each can fail.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduction.conventions import sky_to_frame_xy
from reduction.instruments import SphereIrdis, classify_header
from reduction.simulator import (
    Readout,
    SimulationParameters,
    SimulationTruth,
    load_truth,
    programme_id,
    simulate_archive,
)
from reduction.simulator.detector import Window

IRDIS = "SPHERE-IRDIS"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> SimulationTruth:
    """Three nights (archival 2016 + two 2026 nights), small windows, few frames."""
    out = tmp_path_factory.mktemp("archive")
    return simulate_archive(
        out,
        nights=3,
        seed=3,
        window=128,
        frames_per_cube=2,
        science_files_per_ob=3,
        aux_ndit=1,
        calib_ndit=2,
        calib_files_per_sequence=1,
        ao_realisations=2,
    )


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory) -> SimulationTruth:
    """Perfect optics, no noise: the only light in coronagraphic frames is the companions'."""
    out = tmp_path_factory.mktemp("noiseless")
    return simulate_archive(
        out,
        nights=1,
        seed=5,
        window=224,
        frames_per_cube=2,
        science_files_per_ob=2,
        aux_ndit=1,
        calib_ndit=1,
        noise=False,
        aberrations=False,
        degraded_frames=False,
        ifs=False,
        obs_per_night=1,
    )


def _headers(truth: SimulationTruth):
    for name, ft in truth.files.items():
        yield name, ft, fits.getheader(truth.path(name))


def _data(truth: SimulationTruth, name: str) -> np.ndarray:
    return fits.getdata(truth.path(name)).astype(np.float64)


def _irdis_observations(truth: SimulationTruth):
    return [o for o in truth.observations if o.instrument == IRDIS]


# -- headers -----------------------------------------------------------------------------------------
SCIENCE_KEYWORDS = [
    "INSTRUME",
    "TELESCOP",
    "DATE-OBS",
    "MJD-OBS",
    "RA",
    "DEC",
    "EXPTIME",
    "OBJECT",
    "HIERARCH ESO DPR CATG",
    "HIERARCH ESO DPR TYPE",
    "HIERARCH ESO DPR TECH",
    "HIERARCH ESO SEQ ARM",
    "HIERARCH ESO INS1 MODE",
    "HIERARCH ESO INS COMB IFLT",
    "HIERARCH ESO INS COMB ICOR",
    "HIERARCH ESO INS1 FILT NAME",
    "HIERARCH ESO INS1 OPTI2 NAME",
    "HIERARCH ESO INS4 COMB ROT",
    "HIERARCH ESO INS4 COMB IND",
    "HIERARCH ESO DET SEQ1 DIT",
    "HIERARCH ESO DET NDIT",
    "HIERARCH ESO DET SEQ1 EXPTIME",
    "HIERARCH ESO TEL PARANG START",
    "HIERARCH ESO TEL PARANG END",
    "HIERARCH ESO TEL AIRM START",
    "HIERARCH ESO TEL AIRM END",
    "HIERARCH ESO TEL AMBI FWHM START",
    "HIERARCH ESO TEL AMBI FWHM END",
    "HIERARCH ESO TEL AMBI TAU0",
    "HIERARCH ESO TEL AMBI WINDSP",
    "HIERARCH ESO TEL GEOLAT",
    "HIERARCH ESO TEL GEOLON",
    "HIERARCH ESO TEL GEOELEV",
    "HIERARCH ESO TEL ALT",
    "HIERARCH ESO SEQ CORO XC",
    "HIERARCH ESO SEQ CORO YC",
    "HIERARCH ESO OCS WAFFLE AMPL",
    "HIERARCH ESO OCS WAFFLE ORIENT",
    "HIERARCH ESO TPL ID",
    "HIERARCH ESO TPL START",
    "HIERARCH ESO TPL EXPNO",
    "HIERARCH ESO TPL NEXP",
    "HIERARCH ESO OBS ID",
    "HIERARCH ESO OBS NAME",
    "HIERARCH ESO OBS PROG ID",
    "HIERARCH ESO OBS PI-COI NAME",
    "HIERARCH ESO OBS TARG NAME",
    "HIERARCH ESO INS4 DROT2 MODE",
    "HIERARCH ESO DET WIN1 NX",
    "HIERARCH ESO DET WIN1 NY",
    "HIERARCH ESO DET WIN1 STRX",
    "HIERARCH ESO DET WIN1 STRY",
]


def test_headers_carry_the_eso_keywords(archive):
    seen = 0
    for name, ft, h in _headers(archive):
        assert h["INSTRUME"] == "SPHERE" and h["TELESCOP"] == "ESO-VLT-U3"
        assert h["ARCFILE"] == name == f"SPHER.{h['DATE-OBS']}.fits"
        assert h["HIERARCH ESO DET NDIT"] == h["NAXIS3"] == ft.ndit
        assert h["HIERARCH ESO DET SEQ1 DIT"] == pytest.approx(ft.dit_s)
        if ft.instrument == IRDIS and ft.kind in ("science", "center", "flux"):
            missing = [k for k in SCIENCE_KEYWORDS if k not in h]
            assert not missing, (name, missing)
            assert h["HIERARCH ESO SEQ ARM"] == "IRDIS" and h["HIERARCH ESO INS1 MODE"] == "DBI"
            assert h["HIERARCH ESO INS4 DROT2 MODE"] == "ELEV"
            assert h["HIERARCH ESO TEL AMBI TAU0"] < 0.05  # seconds, as ESO writes it
            assert 0.3 < h["HIERARCH ESO TEL AMBI FWHM START"] < 3.0
            assert h["NAXIS1"] == 2 * 128 and h["NAXIS2"] == 128
            assert h["HIERARCH ESO DET WIN2 NX"] == 128
            seen += 1
        if ft.kind == "flux":
            assert h["HIERARCH ESO INS4 COMB IND"] in ("ND_1.0", "ND_2.0", "ND_3.5")
        if ft.instrument == "SPHERE-IFS":
            assert h["HIERARCH ESO SEQ ARM"] == "IFS" and h["HIERARCH ESO DPR TECH"] == "IFU"
            assert h["HIERARCH ESO INS2 COMB IFS"] in ("OBS_YJ", "OBS_H")
    assert seen > 20


def test_every_file_classifies_as_the_truth_says(archive):
    groups = defaultdict(set)
    for name, ft, h in _headers(archive):
        info = classify_header(h, name)
        assert info.instrument == ft.instrument
        assert info.kind.value == ft.kind, name
        assert info.night.isoformat() == ft.night, name  # noon-to-noon nights
        assert info.dit_key == round(ft.dit_s, 2)
        if ft.observation:
            obs = archive.observation(ft.observation)
            assert info.ob_id == obs.ob_id and info.programme == obs.programme and info.target == obs.target
            assert info.filter == obs.filter
            groups[(info.night, info.instrument, info.ob_id)].add(name)
    counts = archive.expected_counts
    assert len(groups) == counts.observations == len(archive.observations)
    assert counts.files == len(archive.files) == sum(counts.files_by_night.values())


def test_both_derotator_keyword_spellings_occur(archive):
    spellings = defaultdict(set)
    for name, ft, h in _headers(archive):
        for key in ("HIERARCH ESO INS4 DROT2 BEGIN", "HIERARCH ESO INS4 DROT2 START"):
            if key in h:
                spellings[key].add(ft.night < "2021-06-01")
    assert spellings["HIERARCH ESO INS4 DROT2 BEGIN"] == {True}
    assert spellings["HIERARCH ESO INS4 DROT2 START"] == {False}


def test_archive_structure_programmes_and_nights(archive):
    root = Path(archive.root)
    from astropy.table import Table

    progs = Table.read(root / "programmes.ecsv", format="ascii.ecsv")
    science = progs[progs["kind"] == "science"]
    assert len(set(science["pi"])) >= 3
    assert {p.prog_id for p in archive.programmes} == set(progs["prog_id"])
    assert programme_id(98, "C", 209, "A") == "098.C-0209(A)"
    observed = {o.programme for o in archive.observations}
    assert observed <= set(science["prog_id"])
    releases = {o.programme: o.release_date for o in archive.observations}
    assert any(r < "2020-01-01" for r in releases.values())  # public long ago
    assert sum(r > "2027-01-01" for r in releases.values()) >= 2  # recent, proprietary
    nights = {n.night: n for n in archive.nights}
    assert sum(n.bad_seeing for n in nights.values()) == 1
    assert archive.bad_seeing_nights and archive.hot_pixel_burst
    # one night's calibrations are taken the next morning (next UTC date, same night)
    nm = [n for n in nights.values() if n.calibrations_next_morning]
    assert nm
    cal_dates = {s.start_utc[:10] for s in archive.calibration_sequences if s.night == nm[0].night}
    next_day = date.fromordinal(date.fromisoformat(nm[0].night).toordinal() + 1).isoformat()
    assert cal_dates == {next_day}
    # an observation straddles UTC midnight, another local midnight (04:00 UTC)
    spans = [(o.start_utc, o.end_utc) for o in archive.observations]
    assert any(s[:10] != e[:10] for s, e in spans)
    assert any(s[11:13] in ("03",) and e[11:13] in ("04",) for s, e in spans)
    # files live under raw/<night>/
    for ft in archive.files.values():
        assert ft.path == f"raw/{ft.night}/{ft.name}"
    # the truth loads back identically
    again = load_truth(root)
    assert again.to_dict() == archive.to_dict()
    assert again.observation(archive.observations[0].obs_id) == archive.observations[0]


def test_expected_calibrations_exist_and_follow_the_rules(archive):
    for obs in archive.observations:
        ec = obs.expected_calibrations
        dits = {
            f"{round(archive.files[n].dit_s, 2):.2f}" for role in ("science", "center", "flux") for n in obs.files[role]
        }
        assert set(ec.darks) == dits == set(ec.backgrounds) == set(ec.skies)
        for key, match in ec.darks.items():
            seq = archive.sequence(match.sequence)
            assert seq.kind == "dark" and f"{round(seq.dits[0], 2):.2f}" == key and seq.arm == obs.arm
        for key, match in ec.backgrounds.items():
            assert archive.sequence(match.sequence).filter == obs.filter
        assert ec.flats is not None and archive.sequence(ec.flats.sequence).filter == obs.filter
        if obs.arm == "IFS":
            assert ec.waves is not None and ec.specpos is not None
    # the hot-pixel burst dark is someone's nearest dark, and the alternative avoids it
    burst = archive.hot_pixel_burst[0]
    users = [o for o in archive.observations for m in o.expected_calibrations.darks.values() if m.sequence == burst]
    assert users
    for obs in users:
        alt = [m for m in obs.expected_calibrations.darks_excluding_flagged.values()]
        assert all(m.sequence != burst for m in alt)


def test_truth_never_leaks_into_headers(archive):
    names = {c.name.upper() for o in archive.observations for c in o.companions}
    exact_centres = {o.obs_id: o.star_centre_xy[0] for o in archive.observations if o.arm == "IRDIS"}
    coro_errors = []
    for name, ft, h in _headers(archive):
        text = h.tostring().upper()
        for word in ("COMPANION", "CONTRAST", "TRUTH", "STREHL", "DEGRADED", "HOT_PIXEL", "BURST", "CLOUD"):
            assert word not in text, (name, word)
        for cname in names:
            assert cname not in text
        if "HIERARCH ESO SEQ CORO XC" in h and ft.observation in exact_centres:
            x, y = exact_centres[ft.observation]
            coro_errors.append(
                math.hypot(h["HIERARCH ESO SEQ CORO XC"] - (x + 1), h["HIERARCH ESO SEQ CORO YC"] - (y + 1))
            )
    assert coro_errors and max(coro_errors) > 0.05  # ESO's guess is not the truth


# -- astrometry ------------------------------------------------------------------------------------
def test_parallactic_angles_agree_with_an_independent_altaz_computation(archive):
    import astropy.units as u
    from astropy.coordinates import CIRS, AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    targets = {t.name: t for t in archive.targets}
    checked = 0
    for obs in archive.observations:
        tgt = targets[obs.target]
        names = obs.files["science"] + obs.files["flux"]
        headers = [fits.getheader(archive.path(n)) for n in names]
        h0 = headers[0]
        loc = EarthLocation.from_geodetic(
            lon=h0["HIERARCH ESO TEL GEOLON"] * u.deg,
            lat=h0["HIERARCH ESO TEL GEOLAT"] * u.deg,
            height=h0["HIERARCH ESO TEL GEOELEV"] * u.m,
        )
        start = Time([h["DATE-OBS"] for h in headers], scale="utc")
        times = Time(
            np.concatenate([start.jd, start.jd + np.array([h["EXPTIME"] for h in headers]) / 86400.0]),
            format="jd",
            scale="utc",
        )
        written = np.array(
            [h["HIERARCH ESO TEL PARANG START"] for h in headers] + [h["HIERARCH ESO TEL PARANG END"] for h in headers]
        )
        star = SkyCoord(
            ra=tgt.ra_deg * u.deg,
            dec=tgt.dec_deg * u.deg,
            pm_ra_cosdec=tgt.pm_ra_mas_yr * u.mas / u.yr,
            pm_dec=tgt.pm_dec_mas_yr * u.mas / u.yr,
            distance=(1000.0 / tgt.parallax_mas) * u.pc,
            radial_velocity=0 * u.km / u.s,
            obstime=Time("J2000"),
            frame="icrs",
        )
        with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            star_t = star.apply_space_motion(new_obstime=times)
            zenith = SkyCoord(alt=90 * u.deg, az=0 * u.deg, frame=AltAz(obstime=times, location=loc))
            cirs = CIRS(obstime=times, location=loc)
            # the parallactic angle is the position angle of the zenith seen from the star
            q = star_t.transform_to(cirs).position_angle(zenith.transform_to(cirs)).wrap_at(180 * u.deg).deg
            alt = star_t.transform_to(AltAz(obstime=times, location=loc)).alt.deg
        diff = (written - q + 180.0) % 360.0 - 180.0
        assert np.max(np.abs(diff)) < 0.05, (obs.obs_id, diff)
        n = len(headers)
        assert np.allclose([h["HIERARCH ESO TEL ALT"] for h in headers], alt[:n], atol=0.05)
        checked += len(diff)
    assert checked > 40


# -- pixels: waffle, flux, companions -----------------------------------------------------------------
def _refine_peak(img: np.ndarray, x: float, y: float, search: int = 4, half: int = 3) -> tuple[float, float]:
    """Brightest pixel within ``search`` of (x, y), refined by a 2D Gaussian fit."""
    from photutils.centroids import centroid_2dg

    ix, iy = int(round(x)), int(round(y))
    sub = img[iy - search : iy + search + 1, ix - search : ix + search + 1]
    py, px = np.unravel_index(np.argmax(sub), sub.shape)
    px, py = ix - search + px, iy - search + py
    stamp = img[py - half : py + half + 1, px - half : px + half + 1]
    stamp = stamp - np.median(img[py - 3 * half : py + 3 * half + 1, px - 3 * half : px + 3 * half + 1])
    cx, cy = centroid_2dg(stamp)
    return px - half + float(cx), py - half + float(cy)


def test_center_frames_show_four_waffle_spots_at_the_expected_radius(archive):
    checked = 0
    for obs in _irdis_observations(archive):
        sky = _data(archive, obs.files["sky"][0]).mean(axis=0)
        cen = _data(archive, obs.files["center"][0])[0] - sky
        radii = []
        for band, ((xc, yc), r_exp) in enumerate(zip(obs.star_centre_file_xy, obs.waffle["spot_radius_px"])):
            spots = [
                _refine_peak(cen, xc + r_exp * math.cos(math.radians(a)), yc + r_exp * math.sin(math.radians(a)))
                for a in obs.waffle["spot_angles_deg"]
            ]
            sx = np.array([s[0] for s in spots])
            sy = np.array([s[1] for s in spots])
            # the star is where the diagonals of the spot square cross
            assert np.hypot(sx.mean() - xc, sy.mean() - yc) < 0.25, (obs.obs_id, band, sx.mean() - xc, sy.mean() - yc)
            r = np.hypot(sx - xc, sy - yc)
            assert np.allclose(r, r_exp, atol=0.35), (obs.obs_id, band, r, r_exp)
            angles = np.degrees(np.arctan2(sy - yc, sx - xc)) % 360.0
            assert np.allclose(angles, obs.waffle["spot_angles_deg"], atol=0.5)
            radii.append(r.mean())
        # radius scales with λ between the two DBI bands
        assert radii[1] / radii[0] == pytest.approx(obs.wavelengths_um[1] / obs.wavelengths_um[0], rel=0.006)
        checked += 1
    assert checked >= 4


def test_flux_frames_peak_at_the_truth_centre_and_are_unsaturated(archive):
    for obs in _irdis_observations(archive):
        sky_name = [n for n in obs.files["sky"] if archive.files[n].dit_s == obs.flux_dit_s][0]
        sky = _data(archive, sky_name).mean(axis=0)
        for name in obs.files["flux"]:
            raw = fits.getdata(archive.path(name))
            img = raw[0].astype(float) - sky
            for band, (xc, yc) in enumerate(obs.flux_centre_file_xy):
                lo, hi = band * 128, (band + 1) * 128
                py, px = np.unravel_index(np.argmax(img[:, lo:hi]), (128, 128))
                assert abs(px + lo - xc) <= 1.0 and abs(py - yc) <= 1.0
                fx, fy = _refine_peak(img, xc, yc, search=2)
                assert math.hypot(fx - xc, fy - yc) < 0.3, (obs.obs_id, name, fx - xc, fy - yc)
                assert raw[0, int(round(yc)), int(round(xc))] < 60000


def test_companions_are_where_sky_to_frame_xy_puts_them(noiseless):
    obs = _irdis_observations(noiseless)[0]
    assert obs.companions
    sky = {n: _data(noiseless, n) for n in obs.files["sky"]}
    sky_sci = [v for n, v in sky.items() if noiseless.files[n].dit_s == obs.science_dit_s][0][0]
    measured = 0
    for name in obs.files["science"]:
        header = fits.getheader(noiseless.path(name))
        cube = _data(noiseless, name)
        readout = Readout.from_header(header, SphereIrdis.detector_shape)
        start, end = header["HIERARCH ESO TEL PARANG START"], header["HIERARCH ESO TEL PARANG END"]
        ndit, dit = header["HIERARCH ESO DET NDIT"], header["HIERARCH ESO DET SEQ1 DIT"]
        for i in range(ndit):
            # PARANG of the frame, interpolated in time between the header's start and end values
            frac = (i * (header["HIERARCH ESO DET SEQ1 EXPTIME"] / ndit) + dit / 2) / header["EXPTIME"]
            alpha = start + frac * (end - start) + SphereIrdis.derotation_offset_deg()
            img = cube[i] - sky_sci
            # perfect optics behind an ideal coronagraph: no starlight left
            for band, (xs, ys) in enumerate(obs.star_centre_xy):
                fx, fy = readout.detector_to_file(xs, ys, band)
                assert abs(img[int(round(fy)), int(round(fx))]) < 1.0
                for comp in obs.companions:
                    x, y = sky_to_frame_xy(comp.separation_px, comp.pa_deg, alpha, (ys, xs))
                    xf, yf = readout.detector_to_file(float(x), float(y), band)
                    if not (
                        6 < xf - band * readout.windows[0].nx < readout.windows[0].nx - 6 and 6 < yf < img.shape[0] - 6
                    ):
                        continue
                    mx, my = _refine_peak(img, xf, yf, search=2)
                    assert math.hypot(mx - xf, my - yf) < 0.12, (comp.name, band, mx - xf, my - yf)
                    measured += 1
    assert measured >= 8


def test_bad_seeing_and_degraded_frames_are_visible(archive):
    # the same target and filter on a good and on the bad night, FLUX frames normalised by the star's
    # known flux: the peak (a Strehl proxy) is lower and the AO halo (5-15 λ/D) brighter on the bad night
    gain = archive.detectors[IRDIS].gain_e_per_adu

    def proxies(obs):
        skies = {archive.files[n].dit_s: _data(archive, n).mean(axis=0) for n in obs.files["sky"]}
        flux = (_data(archive, obs.files["flux"][0])[0] - skies[obs.flux_dit_s])[:, :128] * gain
        peak = flux.max() / (obs.star_flux_e_per_s[0] * obs.nd_transmission[0] * obs.flux_dit_s)
        # coronagraphic halo inside the control radius, normalised by the star's flux
        coro = (_data(archive, obs.files["science"][0])[0] - skies[obs.science_dit_s])[:, :128] * gain
        xc, yc = obs.star_centre_file_xy[0]
        yy, xx = np.indices(coro.shape)
        r = np.hypot(xx - xc, yy - yc) / (obs.wavelengths_um[0] * 1e-6 / 8.0 * 206264.806 / obs.pixel_scale_arcsec)
        halo = coro[(r > 5) & (r < 15)].sum() / (obs.star_flux_e_per_s[0] * obs.science_dit_s)
        return peak, halo

    bad_night = archive.bad_seeing_nights[0]
    by_slot = defaultdict(dict)
    for obs in _irdis_observations(archive):
        by_slot[(obs.target, obs.filter)][obs.night] = obs
    pairs = [v for v in by_slot.values() if bad_night in v and len(v) > 1]
    assert pairs
    for v in pairs:
        good = [o for n, o in v.items() if n != bad_night][0]
        (peak_bad, halo_bad), (peak_good, halo_good) = proxies(v[bad_night]), proxies(good)
        assert peak_bad < (0.85 if v[bad_night].filter == "DB_H23" else 0.95) * peak_good
        assert halo_bad > 2.0 * halo_good
    # degraded frames: an open AO loop fills the halo; a cloud dims everything
    reasons = set()
    for obs in archive.observations:
        for d in obs.degraded_frames:
            cube = _data(archive, d.file)
            sky = _data(archive, obs.files["sky"][0]).mean(axis=0)
            good = [i for i in range(cube.shape[0]) if i not in archive.files[d.file].degraded_frames]
            ref = cube[good[0]] - sky if good else _data(archive, obs.files["science"][0])[0] - sky
            bad = cube[d.frame] - sky
            xc, yc = obs.star_centre_file_xy[0]
            yy, xx = np.indices(bad.shape)
            r = np.hypot(xx - xc, yy - yc)
            ring = (r > 8) & (r < 40)
            if d.reason == "ao_loop_open":
                assert bad[ring].sum() > 5 * ref[ring].sum()
            else:
                assert bad[ring].sum() < 0.5 * ref[ring].sum()
            reasons.add(d.reason)
    assert reasons == {"ao_loop_open", "cloud"}


# -- detector truth --------------------------------------------------------------------------------------
def _readout(truth: SimulationTruth) -> Readout:
    det = truth.detectors[IRDIS]
    return Readout(tuple(det.shape), tuple(Window(*w) for w in det.readout_windows))


def _irdis_maps(truth: SimulationTruth, readout: Readout):
    path = Path(truth.root) / truth.detectors[IRDIS].maps_file
    with fits.open(path) as hdul:
        return {name: readout.extract(hdul[name].data) for name in ("FLAT", "DARK", "BIAS", "HOT", "DEAD")}


def test_dark_level_is_proportional_to_dit(archive):
    det = archive.detectors[IRDIS]
    readout = _readout(archive)
    maps = _irdis_maps(archive, readout)
    good = (maps["HOT"] == 0) & (maps["DEAD"] == 0)
    levels = {}
    for seq in archive.calibration_sequences:
        if seq.kind == "dark" and seq.arm == "IRDIS" and not seq.flags:
            cube = np.concatenate([_data(archive, n) for n in seq.files])
            levels.setdefault(seq.dits[0], []).append(float(cube.mean(axis=0)[good].mean()))
    dits = np.array(sorted(levels))
    means = np.array([np.mean(levels[d]) for d in dits])
    assert len(dits) >= 4 and dits.max() >= 64
    slope, intercept = np.polyfit(dits, means, 1)
    expected_slope = maps["DARK"][good].mean() / det.gain_e_per_adu
    assert slope == pytest.approx(expected_slope, rel=0.1)
    assert intercept == pytest.approx(maps["BIAS"][good].mean(), abs=0.3)
    assert np.max(np.abs(means - (slope * dits + intercept))) < 0.2
    # the hot-pixel burst sequence has many more hot pixels than a normal dark of the same DIT
    burst = archive.sequence(archive.hot_pixel_burst[0])
    normal = [
        s
        for s in archive.calibration_sequences
        if s.kind == "dark" and s.dits == burst.dits and not s.flags and s.arm == "IRDIS"
    ][0]

    def n_hot(seq):
        img = _data(archive, seq.files[0]).mean(axis=0)
        return int(((img - maps["BIAS"]) > 50)[good].sum())

    assert n_hot(burst) > n_hot(normal) + 20


def test_flat_frames_show_the_saved_flat_map(archive):
    det = archive.detectors[IRDIS]
    readout = _readout(archive)
    maps = _irdis_maps(archive, readout)
    good = (maps["HOT"] == 0) & (maps["DEAD"] == 0)
    flat_seq = [s for s in archive.calibration_sequences if s.kind == "flat" and s.arm == "IRDIS"][0]
    name = [n for n in flat_seq.files if archive.files[n].dit_s == max(flat_seq.dits)][0]
    dit = archive.files[name].dit_s
    dark_seq = [
        s
        for s in archive.calibration_sequences
        if s.kind == "dark" and s.arm == "IRDIS" and s.dits == (dit,) and s.night == flat_seq.night and not s.flags
    ][0]
    flat = _data(archive, name).mean(axis=0) - _data(archive, dark_seq.files[0]).mean(axis=0)
    for band in range(2):
        sl = np.s_[:, band * 128 : (band + 1) * 128]
        ratio = flat[sl] / np.median(flat[sl][good[sl]])
        truth = maps["FLAT"][sl] / np.median(maps["FLAT"][sl][good[sl]])
        residual = (ratio - truth)[good[sl]]
        level_e = np.median(flat[sl]) * det.gain_e_per_adu
        noise = math.sqrt(level_e + 2 * det.read_noise_e**2) / level_e / math.sqrt(2)  # 2 frames averaged
        assert abs(np.median(residual)) < 0.002
        assert residual.std() < 1.5 * noise + 0.001
        assert np.corrcoef(ratio[good[sl]], truth[good[sl]])[0, 1] > 0.9
        assert truth[good[sl]].std() > 0.01  # 1-2 % rms flat
    # dead pixels do not respond
    dead = maps["DEAD"] == 1
    if dead.any():
        assert np.all(flat[dead] < 50)


# -- determinism and speed options ---------------------------------------------------------------------
def test_same_seed_same_archive_and_headers_only_mode(tmp_path):
    kwargs = dict(
        nights=1,
        seed=11,
        window=32,
        frames_per_cube=1,
        science_files_per_ob=1,
        aux_ndit=1,
        calib_ndit=1,
        calib_files_per_sequence=1,
        ao_realisations=1,
        ifs_window=64,
    )
    a = simulate_archive(tmp_path / "a", **kwargs)
    b = simulate_archive(tmp_path / "b", **kwargs)
    c = simulate_archive(tmp_path / "c", **{**kwargs, "seed": 12, "ifs": False})
    assert {n: f.sha256 for n, f in a.files.items()} == {n: f.sha256 for n, f in b.files.items()}
    assert (tmp_path / "a" / "truth.json").read_text() == (tmp_path / "b" / "truth.json").read_text()
    common = sorted(n for n in set(a.files) & set(c.files) if a.files[n].kind == "science")
    assert common
    assert not np.array_equal(fits.getdata(a.path(common[0])), fits.getdata(c.path(common[0])))
    fast = simulate_archive(tmp_path / "d", headers_only=True, **kwargs)
    assert set(fast.files) == set(a.files)
    name = next(iter(fast.files))
    assert fits.getheader(fast.path(name)) == fits.getheader(a.path(name))
    assert fits.getdata(fast.path(name)).shape == fits.getdata(a.path(name)).shape


def test_parameters_roundtrip_and_validation():
    p = SimulationParameters(nights=2, window=64, start_date=date(2026, 7, 1))
    assert SimulationParameters.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert p.effective_ifs_window == 128
    with pytest.raises(ValueError):
        SimulationParameters(nights=0)
    with pytest.raises(ValueError):
        SimulationParameters(window=4)
