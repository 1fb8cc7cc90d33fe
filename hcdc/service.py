"""The HC-DC catalog service: the one door from users' notebooks to the catalog and products.

A small tornado application registered with JupyterHub as a service
(``/services/hcdc-catalog/``). Every request carries the user's hub token (a
kernel's ``$JUPYTERHUB_API_TOKEN``); the service asks the hub who it belongs to
(``jupyterhub.services.auth.HubAuth``), requires the scope
``access:services!service=<name>``, and answers JSON with what
:mod:`hcdc.access` lets that user see. On PostgreSQL each query also runs as
the role ``hcdc_reader`` under the row-level-security policies of migration
0003, so a row the Python filter would wrongly let through is still refused by
the database. Product files are streamed by the service, which runs as the
hub's OS user: PI processes (other OS users) cannot read the data directory.

Errors are JSON ``{"status": ..., "error": ..., "message": ...}`` with a
sentence for a person — never a traceback.

Endpoints (under the service prefix)::

    GET api/health                          no authentication
    GET api/whoami                          user, staff flag, programmes, a note when none
    GET api/observations[?mine=1]           observations the user may see
    GET api/observations/<id>               one observation (403 proprietary, 404 missing)
    GET api/observations/<id>/raw_files|products|detections|detection_limits
    GET api/products/<id>                   product metadata
    GET api/products/<id>/file              the product file, streamed
    GET api/observations/<id>/calibrated    the calibrated cube/angles/psf products to post-process
    POST api/observations/<id>/reductions   save an interactive reduction as the user's own
                                            (PI/co-I of the observation's programme, or staff)
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import platform
import re
import shutil
import traceback
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hcdc import access
from hcdc.access import Principal
from hcdc.catalog.db import Catalog
from hcdc.catalog.models import (
    Detection,
    DetectionLimit,
    DetectionLimitPoint,
    Observation,
    Product,
    Programme,
    ProgrammeMember,
    RawFile,
    Reduction,
    Target,
    User,
)

log = logging.getLogger("hcdc.service")

CHUNK = 1 << 20


class ServiceError(Exception):
    """An error with an HTTP status and a message for a person."""

    status = 400
    kind = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


#: step name of reductions saved from the widgets (hcdc_widgets)
INTERACTIVE_STEP = "postprocess-interactive"
#: images a saved reduction may carry as products (float32, at most this many pixels each)
SAVED_IMAGES = ("residuals", "snrmap")
MAX_IMAGE_PIXELS = 4096 * 4096
#: what a save key may be (the kernel makes a random one per finished run; see ``save_reduction``)
SAVE_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: the largest id a catalog row can have (PostgreSQL integer): larger ids are answered 404, never 500
MAX_ROW_ID = 2**31 - 1


class NotFound(ServiceError):
    status = 404
    kind = "not_found"


class Forbidden(ServiceError):
    status = 403
    kind = "permission_denied"


# --- the database side ------------------------------------------------------------------


def _iso(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


class CatalogAccess:
    """Queries on behalf of a user, through :mod:`hcdc.access` (and RLS on PostgreSQL).

    Parameters
    ----------
    catalog : Catalog
        The catalog, opened with the owner's credentials (the service's own).
    use_rls : bool, optional
        Run user queries as :data:`hcdc.access.READER_ROLE` (PostgreSQL only).
        Default: when the database is PostgreSQL and the role exists.
    """

    def __init__(self, catalog: Catalog, use_rls: bool | None = None, data_dir: Path | None = None):
        self.catalog = catalog
        #: where saved reductions' images go (None: they are not stored as products)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        postgres = catalog.engine.dialect.name == "postgresql"
        if use_rls is None:
            use_rls = postgres and self._reader_role_exists()
        if use_rls and not postgres:
            raise ValueError("row-level security needs PostgreSQL")
        self.use_rls = use_rls

    def _reader_role_exists(self) -> bool:
        with self.catalog.engine.connect() as connection:
            return bool(connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": access.READER_ROLE}))

    @contextmanager
    def session_for(self, principal: Principal) -> Iterator[Session]:
        """A read-only session whose queries the database restricts to ``principal``."""
        with self.catalog.session() as session:
            if self.use_rls:
                session.execute(text("SET TRANSACTION READ ONLY"))
                session.execute(text(f"SET LOCAL ROLE {access.READER_ROLE}"))
                session.execute(
                    text("SELECT set_config(:k, :v, true)"), {"k": access.USER_SETTING, "v": principal.username}
                )
            yield session
            session.rollback()  # read-only: never commit anything done on a user's behalf

    def principal(self, username: str) -> Principal:
        with self.catalog.session() as session:
            return access.principal_for(session, username)

    # -- existence checks run with the service's own rights: they say 'exists', never what
    def _exists(self, model: type, row_id: int) -> bool:
        with self.catalog.session() as session:
            return session.scalar(select(model.id).where(model.id == row_id)) is not None

    def _get_visible(self, session: Session, principal: Principal, model: type, row_id: int, noun: str):
        if not 0 < row_id <= MAX_ROW_ID:  # beyond any id the database can hold: missing, not an error
            raise NotFound(f"{noun} {row_id} does not exist in the catalog")
        row = session.scalar(access.visible_query(model, principal).where(model.id == row_id))
        if row is not None:
            return row
        if self._exists(model, row_id):
            raise Forbidden(
                f"{noun} {row_id} is proprietary: it is not released yet and {principal.username or 'you'} "
                f"is neither PI/co-I of its programme nor staff"
            )
        raise NotFound(f"{noun} {row_id} does not exist in the catalog")

    # -- answers
    def whoami(self, principal: Principal) -> dict[str, Any]:
        with self.catalog.session() as session:
            rows = session.execute(
                select(Programme.prog_id, Programme.title, ProgrammeMember.role)
                .join(ProgrammeMember, ProgrammeMember.programme_id == Programme.id)
                .join(User, User.id == ProgrammeMember.user_id)
                .where(User.username == principal.username)
                .order_by(Programme.prog_id)
            ).all()
        answer: dict[str, Any] = {
            "user": principal.username,
            "staff": principal.is_staff,
            "known": principal.known,
            "programmes": [{"prog_id": p, "title": t, "role": r} for p, t, r in rows],
        }
        if principal.is_staff:
            answer["message"] = f"{principal.username} is staff: every observation is visible"
        elif not rows:
            who = principal.username if principal.known else f"{principal.username} (unknown to the catalog)"
            answer["message"] = f"{who} is not PI or co-I of any programme: only public (released) data are visible"
        return answer

    def observations(
        self, principal: Principal, mine: bool = False, limit: int = 1000, offset: int = 0
    ) -> list[dict[str, Any]]:
        if mine and not principal.programme_ids and not principal.is_staff:
            raise NotFound(
                f"{principal.username} is not PI or co-I of any programme, so has no observations "
                f"of their own; all observations lists the public ones"
            )
        with self.session_for(principal) as session:
            query = access.visible_query(Observation, principal)
            if mine and not principal.is_staff:
                query = query.where(Observation.programme_id.in_(sorted(principal.programme_ids)))
            query = query.order_by(Observation.night, Observation.key).limit(limit).offset(offset)
            return [self._observation(session, o) for o in session.scalars(query)]

    def observation(self, principal: Principal, observation_id: int) -> dict[str, Any]:
        with self.session_for(principal) as session:
            row = self._get_visible(session, principal, Observation, observation_id, "observation")
            return self._observation(session, row)

    def children(self, principal: Principal, observation_id: int, kind: str) -> list[dict[str, Any]]:
        model, serialise = {
            "raw_files": (RawFile, self._raw_file),
            "products": (Product, self._product),
            "detections": (Detection, self._detection),
            "detection_limits": (DetectionLimit, self._limit),
        }[kind]
        with self.session_for(principal) as session:
            self._get_visible(session, principal, Observation, observation_id, "observation")
            query = (
                access.visible_query(model, principal).where(model.observation_id == observation_id).order_by(model.id)
            )
            return [serialise(row) for row in session.scalars(query)]

    def sources(self, principal: Principal, target: str | None = None) -> list[dict[str, Any]]:
        """Sources with their verdict from the epochs ``principal`` may see (:mod:`hcdc.sources`)."""
        from .sources import source_rows

        with self.session_for(principal) as session:
            try:
                return source_rows(session, access.visibility_filter(Detection, principal), target_name=target)
            except ValueError as exc:
                raise NotFound(str(exc)) from None

    def source_photometry(self, principal: Principal, source_id: int) -> list[dict[str, Any]]:
        """One source's photometry across bands and instruments, from the detections ``principal`` may see."""
        from .sources import source_photometry

        if not 0 < source_id <= MAX_ROW_ID:
            raise NotFound(f"no source {source_id}")
        with self.session_for(principal) as session:
            try:
                return source_photometry(session, access.visibility_filter(Detection, principal), source_id)
            except ValueError as exc:
                raise NotFound(str(exc)) from None

    def source_plot(self, principal: Principal, source_id: int) -> bytes:
        """The background-track plot (PNG) of one source, from the epochs ``principal`` may see."""
        import tempfile

        from .sources import plot_source_png

        if not 0 < source_id <= MAX_ROW_ID:
            raise NotFound(f"no source {source_id}")
        with self.session_for(principal) as session, tempfile.TemporaryDirectory() as tmp:
            try:
                path = plot_source_png(
                    session, source_id, Path(tmp) / "source.png", access.visibility_filter(Detection, principal)
                )
            except ValueError as exc:
                raise NotFound(str(exc)) from None
            return path.read_bytes()

    def product(self, principal: Principal, product_id: int) -> dict[str, Any]:
        with self.session_for(principal) as session:
            return self._product(self._get_visible(session, principal, Product, product_id, "product"))

    def product_file(self, principal: Principal, product_id: int) -> tuple[Path, dict[str, Any]]:
        meta = self.product(principal, product_id)
        path = Path(meta["path"])
        if not path.is_file():
            raise NotFound(
                f"product {product_id} is in the catalog but its file {path.name} is missing on disk; "
                f"tell the data-center staff"
            )
        return path, meta

    def calibrated(self, principal: Principal, observation_id: int) -> dict[str, Any]:
        """The products the post-processing starts from: newest done source reduction's cube, angles, psf."""
        from hcdc.postprocessing import SOURCE_STEPS

        with self.session_for(principal) as session:
            self._get_visible(session, principal, Observation, observation_id, "observation")
            observation = session.get(Observation, observation_id)
            sources = session.scalars(
                access.visible_query(Reduction, principal)
                .where(
                    Reduction.observation_id == observation_id,
                    Reduction.step.in_(SOURCE_STEPS),
                    Reduction.status == "done",
                )
                .order_by(Reduction.finished_at.desc(), Reduction.id.desc())
            )
            for source in sources:
                products = {
                    p.kind: p
                    for p in session.scalars(
                        access.visible_query(Product, principal).where(
                            Product.reduction_id == source.id, Product.kind.in_(("cube", "angles", "psf"))
                        )
                    )
                }
                if set(products) == {"cube", "angles", "psf"}:
                    meta = products["cube"].meta or {}
                    return {
                        "observation_id": observation_id,
                        "reduction_id": source.id,
                        "step": source.step,
                        "pixel_scale_arcsec": meta.get("pixel_scale_arcsec") or observation.pixel_scale_arcsec,
                        "star_flux": meta.get("star_flux") or [],
                        "wavelengths_um": meta.get("wavelengths_um") or [],
                        "fwhm_px": meta.get("fwhm_px") or [],
                        # what the error budget of a detection needs (reduction.postproc.budget)
                        "instrument": observation.instrument,
                        "filter": observation.filter,
                        "night": _iso(observation.night),
                        "centre_status": meta.get("centre_status"),
                        "centre_uncertainty_px": meta.get("centre_uncertainty_px") or [],
                        "star_flux_rel_err": meta.get("star_flux_rel_err") or [],
                        "products": {kind: self._product(p) for kind, p in sorted(products.items())},
                    }
        raise NotFound(
            f"observation {observation_id} has no calibrated cube yet (its pre-processing has not run "
            f"or failed); ask the data-center staff"
        )

    def save_reduction(self, principal: Principal, observation_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        """Record an interactive post-processing as ``principal``'s own reduction (see module docstring).

        The rights are checked here, never by the caller: the observation must be visible and the user PI/co-I
        of its programme (or staff); the inputs must be this observation's calibrated products with the
        catalog's sha256; every row gets the latest release date of the observation and the inputs.

        All or nothing: the reduction, its detections, limits and products are one transaction, and the
        image files written for it are removed if it does not commit. ``payload["save_key"]`` (optional,
        made by the kernel per finished run): a save repeated under the same key (its answer was lost when
        the service restarted) returns the reduction recorded the first time, with ``already_saved``,
        instead of recording it twice.
        """
        if not isinstance(payload, dict):
            raise ServiceError("the body must be a JSON object")
        save_key = payload.get("save_key")
        if save_key is not None and (not isinstance(save_key, str) or not SAVE_KEY.fullmatch(save_key)):
            raise ServiceError("save_key must be 8 to 64 letters, digits, '-' or '_'")
        with self.session_for(principal) as session:
            self._get_visible(session, principal, Observation, observation_id, "observation")
        try:
            return self._save_reduction(principal, observation_id, payload, save_key)
        except IntegrityError:
            # the same key committed by a concurrent request (a client's retry racing its first attempt)
            if save_key is None:
                raise
            with self.catalog.session() as session:
                earlier = self._saved_under(session, principal, save_key)
                if earlier is None:
                    raise
                return self._saved(session, earlier, principal, observation_id, already_saved=True)

    def remove_unsaved_files(self) -> list[Path]:
        """Remove the image folders of interactive saves that never committed; returns them.

        A save writes its images before its transaction commits; a service killed in between leaves
        files that no row names (SQLite gives the id again, and the next save clears its folder;
        PostgreSQL does not). Run at the service's start, when no save is under way.
        """
        if self.data_dir is None:
            return []
        with self.catalog.session() as session:
            recorded = set(session.scalars(select(Reduction.id).where(Reduction.step == INTERACTIVE_STEP)))
        removed = []
        for folder in sorted((Path(self.data_dir) / "products").glob("obs*/interactive-r*")):
            suffix = folder.name.removeprefix("interactive-r")
            if folder.is_dir() and not folder.is_symlink() and suffix.isdigit() and int(suffix) not in recorded:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed

    def _saved_under(self, session: Session, principal: Principal, save_key: str) -> Reduction | None:
        return session.scalar(
            select(Reduction)
            .join(User, Reduction.owner_id == User.id)
            .where(User.username == principal.username, Reduction.save_key == save_key)
        )

    def _saved(
        self, session: Session, reduction: Reduction, principal: Principal, observation_id: int, already_saved: bool
    ) -> dict[str, Any]:
        """What a save answers: the reduction as recorded (``already_saved``: by an earlier request)."""
        if reduction.observation_id != observation_id:
            raise ServiceError(
                f"save_key {reduction.save_key} was used for a reduction of observation {reduction.observation_id}"
            )
        n_detections = session.scalar(select(func.count(Detection.id)).where(Detection.reduction_id == reduction.id))
        n_limits = session.scalar(
            select(func.count(DetectionLimit.id)).where(DetectionLimit.reduction_id == reduction.id)
        )
        products = session.scalars(select(Product).where(Product.reduction_id == reduction.id).order_by(Product.id))
        return {
            "reduction_id": reduction.id,
            "step": reduction.step,
            "owner": principal.username,
            "release_date": _iso(reduction.release_date),
            "n_detections": int(n_detections or 0),
            "n_limits": int(n_limits or 0),
            "products": [self._product(p) for p in products],
            "save_key": reduction.save_key,
            "already_saved": already_saved,
        }

    def _save_reduction(
        self, principal: Principal, observation_id: int, payload: dict[str, Any], save_key: str | None
    ) -> dict[str, Any]:
        from hcdc.processing import code_version, environment_sha256, git_commit
        from hcdc.reports import product_folder
        from reduction.postproc.pipeline import PostprocessParameters, PostprocessStep

        with self.catalog.session() as session:
            observation = session.get(Observation, observation_id)
            user = session.scalar(select(User).where(User.username == principal.username))
            if user is None:
                raise Forbidden(
                    f"{principal.username} is unknown to the catalog: only PI/co-Is of a programme "
                    f"(or staff) can save reductions"
                )
            if not principal.is_staff and observation.programme_id not in principal.programme_ids:
                programme = session.get(Programme, observation.programme_id) if observation.programme_id else None
                raise Forbidden(
                    f"{principal.username} is not PI or co-I of programme "
                    f"{programme.prog_id if programme else '(none)'}: only its members (or staff) "
                    f"can save reductions of observation {observation_id}; you may still run it"
                )
            if save_key is not None:
                earlier = self._saved_under(session, principal, save_key)
                if earlier is not None:  # a repeated save: the first one was recorded whole
                    return self._saved(session, earlier, principal, observation_id, already_saved=True)
            try:
                params = PostprocessParameters.from_dict(payload.get("parameters") or {})
            except (TypeError, ValueError) as exc:
                raise ServiceError(f"invalid post-processing parameters: {exc}") from None
            inputs = payload.get("inputs") or []
            if not isinstance(inputs, list) or not inputs:
                raise ServiceError("a saved reduction needs its input products (ids and sha256)")
            recorded, dates, kinds = [], [observation.release_date], set()
            for item in inputs:
                try:
                    product = session.get(Product, int(item["product_id"]))
                    sha256 = str(item["sha256"])
                except (KeyError, TypeError, ValueError):
                    raise ServiceError("each input needs an integer product_id and its sha256") from None
                if product is None or product.observation_id != observation_id:
                    raise ServiceError(
                        f"input product {item.get('product_id')} is not a product of observation {observation_id}"
                    )
                if not access.row_visible(session, principal, product):
                    raise Forbidden(f"input product {product.id} is proprietary")
                if product.sha256 != sha256:
                    raise ServiceError(
                        f"input product {product.id} does not match the catalog (sha256 differs): "
                        f"reload the observation"
                    )
                kinds.add(product.kind)
                dates.append(product.release_date)
                recorded.append(
                    {
                        "product_id": product.id,
                        "reduction_id": product.reduction_id,
                        "kind": product.kind,
                        "sha256": product.sha256,
                    }
                )
            missing = {"cube", "angles", "psf"} - kinds
            if missing:
                raise ServiceError(f"the inputs lack the {', '.join(sorted(missing))} product(s)")
            release = access.derived_release_date(dates)
            # every server-side fact is the server's own: owner, times, code, host. Nothing the client says
            # names a file (a reduction saved from a kernel has no executed notebook of the pipeline's)
            now = datetime.now(timezone.utc)
            reduction = Reduction(
                observation_id=observation_id,
                owner_id=user.id,
                step=INTERACTIVE_STEP,
                step_version=PostprocessStep.version,
                parameters=params.to_dict(),
                parameters_sha256=params.fingerprint(),
                inputs=recorded,
                code_version=code_version(),
                git_commit=git_commit(),
                environment_sha256=environment_sha256(),
                host=platform.node(),
                notebook_path=None,
                report_path=None,
                log_path=None,
                status="done",
                attempts=1,
                started_at=now,
                finished_at=now,
                release_date=release,
                save_key=save_key,
            )
            session.add(reduction)
            session.flush()
            folder = (
                product_folder(self.data_dir, observation_id, "interactive", reduction.id) if self.data_dir else None
            )
            try:
                detections = [
                    self._new_detection(d, reduction, observation, release) for d in payload.get("detections") or []
                ]
                limits = [self._new_limit(x, reduction, observation_id, release) for x in payload.get("limits") or []]
                session.add_all(detections + limits)
                self._save_images(payload.get("images") or {}, reduction, observation_id, release, folder)
                session.flush()
                answer = self._saved(session, reduction, principal, observation_id, already_saved=False)
                session.commit()  # here, so that a failed commit still removes the files below
            except BaseException:
                # all or nothing: the rows roll back with the session, the files written so far go too
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            return answer

    @staticmethod
    def _new_detection(d: dict[str, Any], reduction: Reduction, observation: Observation, release) -> Detection:
        from reduction.postproc.tables import DETECTION_FIELDS

        try:
            fields = {}
            for field in DETECTION_FIELDS:
                if field.kind is str:
                    fields[field.name] = _text(d.get(field.name), {"note": 200, "found_by": 64}.get(field.name, 24))
                else:
                    fields[field.name] = float(d[field.name]) if field.required else _number(d.get(field.name))
        except (KeyError, TypeError, ValueError):
            required = ", ".join(f.name for f in DETECTION_FIELDS if f.required)
            raise ServiceError(f"each detection needs numbers {required}") from None
        return Detection(
            reduction_id=reduction.id,
            observation_id=observation.id,
            target_id=observation.target_id,
            release_date=release,
            **fields,
        )

    @staticmethod
    def _new_limit(x: dict[str, Any], reduction: Reduction, observation_id: int, release) -> DetectionLimit:
        try:
            limit = DetectionLimit(
                reduction_id=reduction.id,
                observation_id=observation_id,
                sigma=float(x.get("sigma", 5.0)),
                algorithm=_text(x.get("algorithm"), 32),
                wavelength_um=_number(x.get("wavelength_um")),
                release_date=release,
            )
            for point in x.get("points") or []:
                sep, value = _number(point.get("sep_arcsec")), _number(point.get("contrast"))
                if sep is not None and value is not None:
                    limit.points.append(
                        DetectionLimitPoint(sep_arcsec=sep, contrast=value, throughput=_number(point.get("throughput")))
                    )
        except (AttributeError, TypeError, ValueError):
            raise ServiceError("each limit needs sigma and points [{sep_arcsec, contrast, throughput}]") from None
        return limit

    def _save_images(
        self, images: dict[str, Any], reduction: Reduction, observation_id: int, release, folder: Path | None
    ) -> list[Product]:
        if not images or folder is None:
            return []
        import numpy as np

        from hcdc.recording import record_products, reduction_provenance
        from reduction.fitsio_products import write_image

        # a folder already there belongs to no row: a save killed before its commit (SQLite reuses its id)
        shutil.rmtree(folder, ignore_errors=True)
        products = []
        for kind, image in sorted(images.items()):
            if kind not in SAVED_IMAGES:
                raise ServiceError(f"unknown image {kind!r}; images: {', '.join(SAVED_IMAGES)}")
            try:
                shape = tuple(int(n) for n in image["shape"])
                data = np.frombuffer(base64.b64decode(image["data"]), dtype="<f4")
                if not 1 <= len(shape) <= 3 or int(np.prod(shape)) > MAX_IMAGE_PIXELS:
                    raise ValueError
                data = data.reshape(shape)
            except (KeyError, TypeError, ValueError):
                raise ServiceError(f"image {kind!r} must be {{shape, data: base64 little-endian float32}}") from None
            folder.mkdir(parents=True, exist_ok=True)
            path = write_image(folder / f"{kind}.fits", data, reduction_provenance(reduction), dtype=np.float32)
            products += record_products(reduction, {kind: path}, observation_id=observation_id, release_date=release)
        return products

    # -- serialisation
    @staticmethod
    def _observation(session: Session, o: Observation) -> dict[str, Any]:
        target = session.get(Target, o.target_id) if o.target_id else None
        programme = session.get(Programme, o.programme_id) if o.programme_id else None
        return {
            "id": o.id,
            "key": o.key,
            "instrument": o.instrument,
            "origin": o.origin,
            "target": target.name if target else None,
            "programme": programme.prog_id if programme else None,
            "night": _iso(o.night),
            "ob_id": o.ob_id,
            "ob_name": o.ob_name,
            "mode": o.mode,
            "filter": o.filter,
            "coronagraph": o.coronagraph,
            "dit_s": o.dit_s,
            "n_science_files": o.n_science_files,
            "n_science_frames": o.n_science_frames,
            "exposure_time_s": o.exposure_time_s,
            "field_rotation_deg": o.field_rotation_deg,
            "seeing_arcsec": o.seeing_arcsec,
            "tau0_ms": o.tau0_ms,
            "airmass": o.airmass,
            "release_date": _iso(o.release_date),
            "proprietary": not access.is_released(o.release_date),
            "status": o.status,
            "status_reason": o.status_reason,
        }

    @staticmethod
    def _raw_file(r: RawFile) -> dict[str, Any]:
        return {
            "id": r.id,
            "path": r.path,
            "kind": r.kind,
            "dpr_type": r.dpr_type,
            "date_obs": _iso(r.date_obs),
            "dit_s": r.dit_s,
            "n_frames": r.n_frames,
            "sha256": r.sha256,
            "release_date": _iso(r.release_date),
        }

    @staticmethod
    def _product(p: Product) -> dict[str, Any]:
        return {
            "id": p.id,
            "reduction_id": p.reduction_id,
            "observation_id": p.observation_id,
            "kind": p.kind,
            "path": p.path,
            "name": Path(p.path).name,
            "sha256": p.sha256,
            "size_bytes": p.size_bytes,
            "meta": p.meta,
            "release_date": _iso(p.release_date),
        }

    @staticmethod
    def _detection(d: Detection) -> dict[str, Any]:
        from reduction.postproc.tables import DETECTION_FIELDS

        names = ("id", "reduction_id", "observation_id", *(f.name for f in DETECTION_FIELDS), "status", "release_date")
        row = {k: _iso(getattr(d, k)) for k in names}
        # an IFS detection's spectrum (empty otherwise): visible with its detection
        row["spectrum"] = [
            {"wavelength_um": p.wavelength_um, "contrast": p.contrast, "contrast_err": p.contrast_err, "snr": p.snr}
            for p in d.spectrum
        ]
        return row

    @staticmethod
    def _limit(limit: DetectionLimit) -> dict[str, Any]:
        return {
            "id": limit.id,
            "reduction_id": limit.reduction_id,
            "observation_id": limit.observation_id,
            "sigma": limit.sigma,
            "algorithm": limit.algorithm,
            "release_date": _iso(limit.release_date),
            "points": [
                {"sep_arcsec": p.sep_arcsec, "contrast": p.contrast, "throughput": p.throughput} for p in limit.points
            ],
        }


def _text(value: Any, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


# --- the HTTP side --------------------------------------------------------------------------


def make_app(catalog_access: CatalogAccess, prefix: str = "/", hub_auth=None):
    """The tornado application (``hub_auth``: a configured ``HubAuth``; default from the environment)."""
    from jupyterhub.services.auth import HubAuth, HubAuthenticated, UserNotAllowed
    from tornado import web

    if hub_auth is None:
        hub_auth = HubAuth(cache_max_age=int(os.environ.get("HCDC_SERVICE_TOKEN_CACHE_SECONDS", "30")))
    service_name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "hcdc-catalog")

    class Base(HubAuthenticated, web.RequestHandler):
        def initialize(self) -> None:
            self.hub_auth = hub_auth
            self.catalog_access = catalog_access

        def check_xsrf_cookie(self) -> None:  # token-authenticated API (no cookies): no xsrf
            return

        def write_error(self, status_code: int, **kwargs: Any) -> None:
            exc = kwargs.get("exc_info", (None, None, None))[1]
            if isinstance(exc, ServiceError):
                status, kind, message = exc.status, exc.kind, exc.message
            elif isinstance(exc, web.HTTPError):
                status, kind = exc.status_code, "http_error"
                message = exc.log_message or self._reason
            else:
                status, kind = 500, "internal_error"
                message = "internal error of the HC-DC catalog service; it is logged, tell the data-center staff"
                if exc is not None:
                    log.error(
                        "internal error on %s:\n%s",
                        self.request.path,
                        "".join(traceback.format_exception(*kwargs["exc_info"])),
                    )
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status, "error": kind, "message": message}))

        def _fail(self, error: ServiceError) -> None:
            self.send_error(error.status, exc_info=(type(error), error, None))

        async def authenticated_principal(self) -> Principal:
            token = self.hub_auth.get_token(self, in_cookie=False)
            if not token:
                raise _Unauthenticated(
                    "no hub token in the request: call the service with 'Authorization: token <token>' "
                    "(hcdc.client.CatalogClient does this with the kernel's $JUPYTERHUB_API_TOKEN)"
                )
            user = await self.hub_auth.get_user(self, sync=False)
            if not user:
                raise _Unauthenticated(
                    "the hub token is invalid or has expired: log in to the hub again "
                    "(or restart your server from the hub's home page)"
                )
            try:
                self.check_hub_user(user)
            except UserNotAllowed:
                raise Forbidden(
                    f"this token of {user.get('name')!r} lacks the scope "
                    f"access:services!service={service_name}: ask the hub administrators"
                ) from None
            if user.get("kind", "user") != "user":
                raise Forbidden(f"{user.get('kind')} {user.get('name')!r} is not a user; the catalog answers users")
            return await asyncio.to_thread(self.catalog_access.principal, user["name"])

        async def run(self, function, *args, **kwargs) -> Any:
            try:
                principal = await self.authenticated_principal()
                return principal, await asyncio.to_thread(function, principal, *args, **kwargs)
            except ServiceError as error:
                self._fail(error)
                return None, None

        def answer(self, value: Any) -> None:
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(value))

    class Health(web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": "ok", "service": service_name}))

    class WhoAmI(Base):
        async def get(self) -> None:
            principal, value = await self.run(lambda p: catalog_access.whoami(p))
            if principal is not None:
                self.answer(value)

    class Observations(Base):
        async def get(self) -> None:
            try:
                mine = self.get_argument("mine", "0").lower() in ("1", "true", "yes")
                limit = int(self.get_argument("limit", "1000"))
                offset = int(self.get_argument("offset", "0"))
            except ValueError:
                return self._fail(ServiceError("limit and offset must be integers"))
            if not (1 <= limit <= 100_000 and offset >= 0):
                return self._fail(ServiceError("limit must be within 1..100000 and offset >= 0"))
            principal, value = await self.run(catalog_access.observations, mine=mine, limit=limit, offset=offset)
            if principal is not None:
                self.answer(value)

    class OneObservation(Base):
        async def get(self, observation_id: str, kind: str | None = None) -> None:
            if kind is None:
                principal, value = await self.run(catalog_access.observation, int(observation_id))
            else:
                principal, value = await self.run(catalog_access.children, int(observation_id), kind)
            if principal is not None:
                self.answer(value)

    class OneProduct(Base):
        async def get(self, product_id: str) -> None:
            principal, value = await self.run(catalog_access.product, int(product_id))
            if principal is not None:
                self.answer(value)

    class ProductFile(Base):
        async def get(self, product_id: str) -> None:
            principal, value = await self.run(catalog_access.product_file, int(product_id))
            if principal is None:
                return
            path, meta = value
            self.set_header(
                "Content-Type", "application/fits" if path.suffix in (".fits", ".fit") else "application/octet-stream"
            )
            self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.set_header("X-HCDC-SHA256", meta["sha256"])
            self.set_header("Cache-Control", "no-store")
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    self.write(chunk)
                    await self.flush()
            self.finish()

    class Calibrated(Base):
        async def get(self, observation_id: str) -> None:
            principal, value = await self.run(catalog_access.calibrated, int(observation_id))
            if principal is not None:
                self.answer(value)

    class Reductions(Base):
        async def post(self, observation_id: str) -> None:
            try:
                payload = json.loads(self.request.body or b"{}")
            except ValueError:
                return self._fail(ServiceError("the body is not valid JSON"))
            principal, value = await self.run(catalog_access.save_reduction, int(observation_id), payload)
            if principal is not None:
                self.set_status(200 if value.get("already_saved") else 201)
                self.answer(value)

    class Sources(Base):
        async def get(self) -> None:
            target = self.get_argument("target", None)
            principal, value = await self.run(catalog_access.sources, target=target)
            if principal is not None:
                self.answer(value)

    class SourcePhotometry(Base):
        async def get(self, source_id: str) -> None:
            principal, value = await self.run(catalog_access.source_photometry, int(source_id))
            if principal is not None:
                self.answer(value)

    class SourcePlot(Base):
        async def get(self, source_id: str) -> None:
            principal, value = await self.run(catalog_access.source_plot, int(source_id))
            if principal is not None:
                self.set_header("Content-Type", "image/png")
                self.set_header("Cache-Control", "no-store")
                self.finish(value)

    class Missing(Base):
        def get(self, *args: Any) -> None:
            self._fail(NotFound(f"no such endpoint {self.request.path}; see api/health, api/whoami, api/observations"))

    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    children = "raw_files|products|detections|detection_limits"
    return web.Application(
        [
            (prefix + r"api/health", Health),
            (prefix + r"api/whoami", WhoAmI),
            (prefix + r"api/observations", Observations),
            (prefix + r"api/observations/(\d+)", OneObservation),
            (prefix + rf"api/observations/(\d+)/({children})", OneObservation),
            (prefix + r"api/observations/(\d+)/calibrated", Calibrated),
            (prefix + r"api/observations/(\d+)/reductions", Reductions),
            (prefix + r"api/products/(\d+)", OneProduct),
            (prefix + r"api/products/(\d+)/file", ProductFile),
            (prefix + r"api/sources", Sources),
            (prefix + r"api/sources/(\d+)/plot.png", SourcePlot),
            (prefix + r"api/sources/(\d+)/photometry", SourcePhotometry),
            (prefix + r"(.*)", Missing),
        ],
        serve_traceback=False,
        log_function=_log_request,
    )


class _Unauthenticated(ServiceError):
    status = 401
    kind = "not_authenticated"


def _log_request(handler) -> None:
    status = handler.get_status()
    method = log.warning if status >= 400 else log.info
    method(
        "%d %s %s %.1f ms", status, handler.request.method, handler.request.path, 1000 * handler.request.request_time()
    )


def main() -> None:
    """Run the service as JupyterHub starts it (environment from the hub and HC-DC settings)."""
    import signal
    from urllib.parse import urlparse

    from tornado.ioloop import IOLoop

    from hcdc.settings import get_settings

    logging.basicConfig(
        level=os.environ.get("HCDC_SERVICE_LOG_LEVEL", "INFO"),
        format="[%(levelname)1.1s %(asctime)s hcdc-catalog] %(message)s",
    )
    settings = get_settings()
    catalog = Catalog(settings.resolved_catalog_url, migrate=False)
    catalog_access = CatalogAccess(catalog, data_dir=settings.data_dir)
    if catalog.engine.dialect.name == "postgresql" and not catalog_access.use_rls:
        log.warning(
            "PostgreSQL catalog without the role %s: row-level security is OFF, only the service's own "
            "filter protects proprietary rows; run 'hcdc db upgrade'",
            access.READER_ROLE,
        )
    for folder in catalog_access.remove_unsaved_files():
        log.warning("removed %s: the images of a save that did not commit (the service stopped during it)", folder)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/hcdc-catalog/")
    app = make_app(catalog_access, prefix)
    app.listen(url.port or 80, url.hostname or "127.0.0.1", xheaders=True)
    log.info(
        "HC-DC catalog service on %s%s (catalog %s, row-level security %s)",
        url.geturl().rstrip("/"),
        prefix,
        catalog.engine.url.render_as_string(hide_password=True),
        "on" if catalog_access.use_rls else "off",
    )
    loop = IOLoop.current()

    def _stop(signum, _frame) -> None:  # the hub sends SIGINT then SIGTERM; either stops at once
        log.info("signal %d: stopping", signum)
        loop.add_callback_from_signal(loop.stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)  # also when started with SIGINT ignored (background jobs)
    loop.start()


if __name__ == "__main__":  # pragma: no cover
    main()
