"""The HC-DC catalog schema (SQLAlchemy 2 declarative, typed).

Every change to these classes goes with an Alembic revision in
``hcdc/catalog/migrations/versions``; ``tests/test_migrations.py`` checks that
upgrading an empty database through every revision yields exactly this schema.

Units: angles in degrees, separations in arcsec, times UTC, durations in seconds,
contrasts as flux ratios. ``release_date`` is the first day a row is public.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so that migrations are reproducible on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def _dt() -> DateTime:
    """All datetimes are stored timezone-aware, in UTC."""
    return DateTime(timezone=True)


class Instrument(Base):
    __tablename__ = "instruments"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    telescope: Mapped[str] = mapped_column(String(32))
    pixel_scale_mas: Mapped[float] = mapped_column(Float)
    site_latitude_deg: Mapped[float] = mapped_column(Float)
    site_longitude_deg: Mapped[float] = mapped_column(Float)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(128))
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)

    memberships: Mapped[list["ProgrammeMember"]] = relationship(back_populates="user")


class Programme(Base):
    """An observing programme (ESO: ``OBS PROG ID``, e.g. ``095.C-0298(A)``)."""

    __tablename__ = "programmes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prog_id: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    pi_name: Mapped[str | None] = mapped_column(String(128))
    proprietary_months: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)

    members: Mapped[list["ProgrammeMember"]] = relationship(back_populates="programme", cascade="all, delete-orphan")


class ProgrammeMember(Base):
    """A user's role in a programme: ``pi`` or ``coi``."""

    __tablename__ = "programme_members"

    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))

    programme: Mapped[Programme] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class Target(Base):
    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ra_deg: Mapped[float | None] = mapped_column(Float)
    dec_deg: Mapped[float | None] = mapped_column(Float)
    pm_ra_mas_yr: Mapped[float | None] = mapped_column(Float)
    pm_dec_mas_yr: Mapped[float | None] = mapped_column(Float)
    parallax_mas: Mapped[float | None] = mapped_column(Float)
    parallax_err_mas: Mapped[float | None] = mapped_column(Float)
    pm_ra_err_mas_yr: Mapped[float | None] = mapped_column(Float)
    pm_dec_err_mas_yr: Mapped[float | None] = mapped_column(Float)
    #: the star's mass, for the orbital motion the common-proper-motion test allows (solar masses)
    mass_msun: Mapped[float | None] = mapped_column(Float)
    spectral_type: Mapped[str | None] = mapped_column(String(32))
    age_myr: Mapped[float | None] = mapped_column(Float)
    age_err_myr: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)

    aliases: Mapped[list["TargetAlias"]] = relationship(back_populates="target", cascade="all, delete-orphan")
    magnitudes: Mapped[list["TargetMagnitude"]] = relationship(back_populates="target", cascade="all, delete-orphan")


class TargetAlias(Base):
    """Other names of a target; ``normalized`` is what lookups compare."""

    __tablename__ = "target_aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    normalized: Mapped[str] = mapped_column(String(64), unique=True)

    target: Mapped[Target] = relationship(back_populates="aliases")


class TargetMagnitude(Base):
    __tablename__ = "target_magnitudes"
    __table_args__ = (UniqueConstraint("target_id", "band", name="uq_target_magnitudes_target_band"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    band: Mapped[str] = mapped_column(String(16))
    mag: Mapped[float] = mapped_column(Float)
    mag_err: Mapped[float | None] = mapped_column(Float)

    target: Mapped[Target] = relationship(back_populates="magnitudes")


class Observation(Base):
    """One science sequence: an OB's frames of one target in one set-up and night.

    ``origin`` is ``raw`` (grouped from raw files by ingest) or ``external`` (an
    already-calibrated cube registered as DIVA+ holds them).
    """

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    instrument: Mapped[str] = mapped_column(ForeignKey("instruments.name"), index=True)
    target_id: Mapped[int | None] = mapped_column(ForeignKey("targets.id"), index=True)
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programmes.id"), index=True)
    origin: Mapped[str] = mapped_column(String(16), default="raw")
    night: Mapped[date] = mapped_column(Date, index=True)
    ob_id: Mapped[int | None] = mapped_column(BigInteger)
    ob_name: Mapped[str | None] = mapped_column(String(128))
    mode: Mapped[str | None] = mapped_column(String(32))
    filter: Mapped[str | None] = mapped_column(String(32))
    coronagraph: Mapped[str | None] = mapped_column(String(32))
    dit_s: Mapped[float | None] = mapped_column(Float)
    date_start: Mapped[datetime | None] = mapped_column(_dt())
    date_end: Mapped[datetime | None] = mapped_column(_dt())
    n_science_files: Mapped[int] = mapped_column(Integer, default=0)
    n_center_files: Mapped[int] = mapped_column(Integer, default=0)
    n_flux_files: Mapped[int] = mapped_column(Integer, default=0)
    n_science_frames: Mapped[int] = mapped_column(Integer, default=0)
    exposure_time_s: Mapped[float | None] = mapped_column(Float)
    parang_start_deg: Mapped[float | None] = mapped_column(Float)
    parang_end_deg: Mapped[float | None] = mapped_column(Float)
    field_rotation_deg: Mapped[float | None] = mapped_column(Float)
    seeing_arcsec: Mapped[float | None] = mapped_column(Float)
    tau0_ms: Mapped[float | None] = mapped_column(Float)
    airmass: Mapped[float | None] = mapped_column(Float)
    wind_speed_ms: Mapped[float | None] = mapped_column(Float)
    pixel_scale_arcsec: Mapped[float | None] = mapped_column(Float)
    release_date: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(16), default="complete")
    status_reason: Mapped[str | None] = mapped_column(Text)
    external: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow, onupdate=utcnow)

    target: Mapped[Target | None] = relationship()
    programme: Mapped[Programme | None] = relationship()
    files: Mapped[list["RawFile"]] = relationship(back_populates="observation")
    calibration_links: Mapped[list["ObservationCalibration"]] = relationship(
        back_populates="observation", cascade="all, delete-orphan"
    )


class RawFile(Base):
    """A file met by ingest, accepted (classified) or rejected (with the reason)."""

    __tablename__ = "raw_files"
    __table_args__ = (Index("ix_raw_files_match", "instrument", "kind", "dit_s"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    reject_keyword: Mapped[str | None] = mapped_column(String(80))
    instrument: Mapped[str | None] = mapped_column(ForeignKey("instruments.name"))
    kind: Mapped[str | None] = mapped_column(String(16))
    dpr_catg: Mapped[str | None] = mapped_column(String(32))
    dpr_type: Mapped[str | None] = mapped_column(String(48))
    dpr_tech: Mapped[str | None] = mapped_column(String(64))
    date_obs: Mapped[datetime | None] = mapped_column(_dt(), index=True)
    mjd_obs: Mapped[float | None] = mapped_column(Float)
    night: Mapped[date | None] = mapped_column(Date, index=True)
    dit_s: Mapped[float | None] = mapped_column(Float)
    ndit: Mapped[int | None] = mapped_column(Integer)
    n_frames: Mapped[int | None] = mapped_column(Integer)
    target: Mapped[str | None] = mapped_column(String(64))
    programme: Mapped[str | None] = mapped_column(String(32))
    ob_id: Mapped[int | None] = mapped_column(BigInteger)
    ob_name: Mapped[str | None] = mapped_column(String(128))
    template_start: Mapped[str | None] = mapped_column(String(32))
    mode: Mapped[str | None] = mapped_column(String(32))
    filter: Mapped[str | None] = mapped_column(String(32))
    coronagraph: Mapped[str | None] = mapped_column(String(32))
    header: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    release_date: Mapped[date | None] = mapped_column(Date)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id", ondelete="SET NULL"), index=True)
    ingested_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow, onupdate=utcnow)

    observation: Mapped[Observation | None] = relationship(back_populates="files")

    @property
    def exptime_s(self) -> float | None:
        """EXPTIME from the header summary (used for mid-exposure times)."""
        return (self.header or {}).get("exptime_s")


class ObservationCalibration(Base):
    """A raw calibration file matched to an observation.

    ``role`` is the FrameKind of the calibration (dark, background, sky, flat,
    wave, specpos, distortion); ``for_dit_s`` the observation DIT it serves
    (darks and skies are matched per DIT; NULL for flats and wavelength files).
    """

    __tablename__ = "observation_calibrations"
    __table_args__ = (
        UniqueConstraint("observation_id", "raw_file_id", "role", "for_dit_s", name="uq_observation_calibrations_link"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"), index=True)
    raw_file_id: Mapped[int] = mapped_column(ForeignKey("raw_files.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    for_dit_s: Mapped[float | None] = mapped_column(Float)

    observation: Mapped[Observation] = relationship(back_populates="calibration_links")
    raw_file: Mapped[RawFile] = relationship()


class IngestRun(Base):
    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(_dt())
    n_seen: Mapped[int] = mapped_column(Integer, default=0)
    n_new: Mapped[int] = mapped_column(Integer, default=0)
    n_updated: Mapped[int] = mapped_column(Integer, default=0)
    n_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    n_rejected: Mapped[int] = mapped_column(Integer, default=0)
    n_observations_changed: Mapped[int] = mapped_column(Integer, default=0)


# --- processing: filled by the calibration, post-processing and pipeline issues -----


class Campaign(Base):
    """A named, versioned release of the catalog's reductions."""

    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_campaigns_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="planned")
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(_dt())


class CampaignReduction(Base):
    """Which reductions make up a campaign (a reduction can serve several versions)."""

    __tablename__ = "campaign_reductions"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    reduction_id: Mapped[int] = mapped_column(
        ForeignKey("reductions.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Reduction(Base):
    """One execution of one step, with its full provenance."""

    __tablename__ = "reductions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    step: Mapped[str] = mapped_column(String(64))
    step_version: Mapped[str] = mapped_column(String(32))
    #: sha256 of (step, version, parameters, input hashes): equal signature on the same observation = up to date
    signature: Mapped[str | None] = mapped_column(String(64), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parameters_sha256: Mapped[str | None] = mapped_column(String(64))
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    code_version: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(40))
    environment_sha256: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(128))
    papermill_run_id: Mapped[str | None] = mapped_column(String(64))
    notebook_path: Mapped[str | None] = mapped_column(String(1024))
    report_path: Mapped[str | None] = mapped_column(String(1024))
    log_path: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(_dt())
    finished_at: Mapped[datetime | None] = mapped_column(_dt())
    #: wall time of the science: computing and writing the products (the rest of the step's time is
    #: the pipeline's: kernel, papermill, provenance, database, figures, report)
    science_seconds: Mapped[float | None] = mapped_column(Float)
    release_date: Mapped[date | None] = mapped_column(Date)
    #: an interactive save's key, sent by the PI's kernel: a save repeated after a lost answer (the service
    #: restarted) finds the reduction already recorded instead of recording it twice (unique per owner)
    save_key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("owner_id", "save_key", name="uq_reductions_owner_save_key"),)

    products: Mapped[list["Product"]] = relationship(back_populates="reduction", cascade="all, delete-orphan")


class Product(Base):
    """A file a reduction wrote (FITS cube, angles, PSF, residuals, ...)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id", ondelete="CASCADE"), index=True)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    release_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)

    reduction: Mapped[Reduction] = relationship(back_populates="products")


class Calibration(Base):
    """A reduced calibration (master dark/flat/sky, bad-pixel map) with quality numbers."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instrument: Mapped[str] = mapped_column(ForeignKey("instruments.name"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    night: Mapped[date | None] = mapped_column(Date)
    dit_s: Mapped[float | None] = mapped_column(Float)
    filter: Mapped[str | None] = mapped_column(String(32))
    date_obs: Mapped[datetime | None] = mapped_column(_dt())
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: sha256 over the sorted sha256s of the raw files it was made from: one row per kind and inputs
    inputs_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)


class Detection(Base):
    """A point source found in a reduction (candidate until vetted)."""

    __tablename__ = "detections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id", ondelete="CASCADE"), index=True)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int | None] = mapped_column(ForeignKey("targets.id"), index=True)
    wavelength_um: Mapped[float | None] = mapped_column(Float)
    x_px: Mapped[float] = mapped_column(Float)
    y_px: Mapped[float] = mapped_column(Float)
    sep_arcsec: Mapped[float] = mapped_column(Float)
    sep_err_arcsec: Mapped[float | None] = mapped_column(Float)
    pa_deg: Mapped[float] = mapped_column(Float)
    pa_err_deg: Mapped[float | None] = mapped_column(Float)
    snr: Mapped[float] = mapped_column(Float)
    fpf: Mapped[float | None] = mapped_column(Float)
    flux: Mapped[float | None] = mapped_column(Float)
    flux_err: Mapped[float | None] = mapped_column(Float)
    contrast: Mapped[float | None] = mapped_column(Float)
    contrast_err: Mapped[float | None] = mapped_column(Float)
    # the error budget, term by term (reduction.postproc.budget); the *_err columns above are their sums
    sep_err_fit_arcsec: Mapped[float | None] = mapped_column(Float)
    sep_err_speckle_arcsec: Mapped[float | None] = mapped_column(Float)
    sep_err_centre_arcsec: Mapped[float | None] = mapped_column(Float)
    sep_err_calibration_arcsec: Mapped[float | None] = mapped_column(Float)
    pa_err_fit_deg: Mapped[float | None] = mapped_column(Float)
    pa_err_speckle_deg: Mapped[float | None] = mapped_column(Float)
    pa_err_centre_deg: Mapped[float | None] = mapped_column(Float)
    pa_err_calibration_deg: Mapped[float | None] = mapped_column(Float)
    contrast_err_fit: Mapped[float | None] = mapped_column(Float)
    contrast_err_speckle: Mapped[float | None] = mapped_column(Float)
    contrast_err_photometry: Mapped[float | None] = mapped_column(Float)
    centre_status: Mapped[str | None] = mapped_column(String(24))
    #: the algorithms whose own detection map finds it, '+'-separated (``PostprocessParameters.confirm_with``)
    found_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    release_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)
    #: the source this detection is an epoch of (``hcdc sources link``)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)

    spectrum: Mapped[list["SpectrumPoint"]] = relationship(
        back_populates="detection", cascade="all, delete-orphan", order_by="SpectrumPoint.wavelength_um"
    )


class SpectrumPoint(Base):
    """One channel of a detection's spectrum (IFS): its contrast to the star at one wavelength.

    Visible exactly when its detection is (the access rule of the detection's observation).
    """

    __tablename__ = "spectra"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id", ondelete="CASCADE"), index=True)
    wavelength_um: Mapped[float] = mapped_column(Float)
    contrast: Mapped[float | None] = mapped_column(Float)
    contrast_err: Mapped[float | None] = mapped_column(Float)
    snr: Mapped[float | None] = mapped_column(Float)

    detection: Mapped[Detection] = relationship(back_populates="spectrum")


class Source(Base):
    """One point source around a target, seen at one or more epochs (detections linked across observations).

    Holds no measurement and no verdict: the status (co-moving, background, undetermined) is computed from
    the epochs the viewer may see (:mod:`hcdc.sources`), so that no one learns from it what a proprietary
    epoch showed.
    """

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    #: the published name of the companion it matches (``hcdc sources link`` cross-matches), if any
    known_name: Mapped[str | None] = mapped_column(String(64))
    #: what the cross-match found odd (e.g. at a known companion's separation, far from its position angle)
    known_note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow, onupdate=utcnow)

    target: Mapped[Target] = relationship()


class ExternalDetection(Base):
    """Relative astrometry of a source published elsewhere (another instrument, a paper): public by nature.

    Registered with ``hcdc register-astrometry``; linked into sources like HC-DC's own detections, so a
    SPHERE epoch can be tested against the literature.
    """

    __tablename__ = "external_detections"
    __table_args__ = (
        UniqueConstraint(
            "target_id", "epoch_mjd", "reference", "object_name", "seq", name="uq_external_detections_epoch"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)
    #: the object's name in the publication (e.g. ``b``)
    object_name: Mapped[str] = mapped_column(String(64), default="")
    epoch_mjd: Mapped[float] = mapped_column(Float)
    #: 0, 1, ...: the measurements of one object at one epoch in one reference (bands, instruments), in order
    seq: Mapped[int] = mapped_column(Integer, default=0)
    sep_arcsec: Mapped[float] = mapped_column(Float)
    sep_err_arcsec: Mapped[float] = mapped_column(Float)
    pa_deg: Mapped[float] = mapped_column(Float)
    pa_err_deg: Mapped[float] = mapped_column(Float)
    instrument: Mapped[str | None] = mapped_column(String(32))
    #: where the numbers come from (bibcode or citation)
    reference: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)


class DetectionLimit(Base):
    """A contrast curve: the non-detection of a reduction."""

    __tablename__ = "detection_limits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id", ondelete="CASCADE"), index=True)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"), index=True)
    sigma: Mapped[float] = mapped_column(Float, default=5.0)
    algorithm: Mapped[str | None] = mapped_column(String(32))
    wavelength_um: Mapped[float | None] = mapped_column(Float)
    release_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(_dt(), default=utcnow)

    points: Mapped[list["DetectionLimitPoint"]] = relationship(
        back_populates="limit", cascade="all, delete-orphan", order_by="DetectionLimitPoint.sep_arcsec"
    )


class DetectionLimitPoint(Base):
    __tablename__ = "detection_limit_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    limit_id: Mapped[int] = mapped_column(ForeignKey("detection_limits.id", ondelete="CASCADE"), index=True)
    sep_arcsec: Mapped[float] = mapped_column(Float)
    contrast: Mapped[float] = mapped_column(Float)
    throughput: Mapped[float | None] = mapped_column(Float)

    limit: Mapped[DetectionLimit] = relationship(back_populates="points")


class CatalogState(Base):
    """One row (``id`` 1): how many write transactions the catalog has committed, and a random token.

    Kept by triggers on every other table (migration 0012), so that it moves with any
    write, whoever makes it; a reader that sees the same count twice saw the same
    catalog. The dashboards serve a page's stored first paint only while the count has
    not moved (:mod:`hcdc.dashboards.snapshots`).
    """

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)
    #: drawn afresh with every change: a count seen before a restore never vouches for the data after it
    token: Mapped[str] = mapped_column(String(32), default="")
