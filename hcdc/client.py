"""Client of the HC-DC catalog service, for notebooks and widgets in a PI's kernel.

Inside a kernel started by the HC-DC hub everything is preset: the service URL
(``$HCDC_SERVICE_URL``) and the user's hub token (``$JUPYTERHUB_API_TOKEN``)::

    from hcdc.client import CatalogClient
    catalog = CatalogClient()
    catalog.whoami()
    for obs in catalog.observations():
        print(obs["id"], obs["target"], obs["night"], obs["release_date"])
    catalog.download_product(12, "cube.fits")

The kernel has no database URL and cannot read the data directory: what the
service refuses is not reachable another way. Refusals raise
:class:`PermissionDenied`, :class:`NotFound`, :class:`AuthenticationError`...
whose message says what happened; in IPython they print as one line, without
a traceback.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import requests

DEFAULT_TIMEOUT = 30.0
#: how long a save is sent again while the catalog service does not answer (a restart takes a few seconds)
SAVE_RETRY_SECONDS = 60.0


def new_save_key() -> str:
    """A random key for one save (see :meth:`CatalogClient.save_reduction`)."""
    return secrets.token_urlsafe(24)


class CatalogError(Exception):
    """An HC-DC catalog service refusal or failure, with a message for a person."""

    status: int | None = None

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def _render_traceback_(self) -> list[str]:  # IPython: show the message, not a traceback
        return [f"{type(self).__name__}: {self.message}"]


class ConfigurationError(CatalogError):
    """The kernel does not know where the catalog service is, or has no token."""


class AuthenticationError(CatalogError):
    """No token, or the hub does not accept it (expired, revoked)."""


class PermissionDenied(CatalogError, PermissionError):
    """The row exists but is proprietary to a programme you are not PI/co-I of."""


class NotFound(CatalogError, LookupError):
    """No such observation or product (or no programme of yours)."""


class ServiceUnavailable(CatalogError):
    """The catalog service cannot be reached or failed."""


class BadRequest(CatalogError, ValueError):
    """The service refused what was sent (e.g. invalid parameters, inputs not matching the catalog)."""


_ERRORS = {400: BadRequest, 401: AuthenticationError, 403: PermissionDenied, 404: NotFound}


class CatalogClient:
    """Talks to the catalog service with the kernel's hub token.

    Parameters
    ----------
    url : str, optional
        Service URL (default ``$HCDC_SERVICE_URL``).
    token : str, optional
        Hub API token (default ``$JUPYTERHUB_API_TOKEN``).
    timeout : float
        Seconds per request.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        url = url or os.environ.get("HCDC_SERVICE_URL")
        if not url:
            raise ConfigurationError(
                "no HC-DC catalog service configured: HCDC_SERVICE_URL is not set "
                "(this kernel was not started by the HC-DC hub; pass url= explicitly)"
            )
        token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            raise ConfigurationError(
                "no hub token: JUPYTERHUB_API_TOKEN is not set (start your server from the HC-DC hub, or pass token=)"
            )
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"token {token}"

    def __repr__(self) -> str:
        return f"CatalogClient({self.url!r})"

    # -- transport
    def _request(
        self, path: str, stream: bool = False, method: str = "GET", body: Any = None, **params: Any
    ) -> requests.Response:
        try:
            response = self._session.request(
                method, self.url + path, params=params or None, timeout=self.timeout, stream=stream, json=body
            )
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"cannot reach the HC-DC catalog service at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("message") or body.get("error") or response.reason
            except ValueError:
                message = f"HTTP {response.status_code} {response.reason}"
                if response.status_code in (502, 503, 599):
                    message += " (is the catalog service running?)"
            error = _ERRORS.get(response.status_code, ServiceUnavailable)
            raise error(message, status=response.status_code)
        return response

    def _json(self, path: str, **params: Any) -> Any:
        return self._request(path, **params).json()

    # -- questions
    def whoami(self) -> dict[str, Any]:
        """Your user name, staff flag and programmes (with a note when you have none)."""
        return self._json("api/whoami")

    def observations(self, mine: bool = False, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Observations you may see: yours and the released ones (``mine=True``: yours only)."""
        return self._json("api/observations", mine=int(mine), limit=limit, offset=offset)

    def observation(self, observation_id: int) -> dict[str, Any]:
        return self._json(f"api/observations/{int(observation_id)}")

    def raw_files(self, observation_id: int) -> list[dict[str, Any]]:
        return self._json(f"api/observations/{int(observation_id)}/raw_files")

    def products(self, observation_id: int) -> list[dict[str, Any]]:
        return self._json(f"api/observations/{int(observation_id)}/products")

    def detections(self, observation_id: int) -> list[dict[str, Any]]:
        return self._json(f"api/observations/{int(observation_id)}/detections")

    def source_photometry(self, source_id: int) -> list[dict[str, Any]]:
        """One source's photometry across bands and instruments (IRDIS bands, IFS channels) you may see."""
        return self._json(f"api/sources/{int(source_id)}/photometry")

    def detection_limits(self, observation_id: int) -> list[dict[str, Any]]:
        return self._json(f"api/observations/{int(observation_id)}/detection_limits")

    def product(self, product_id: int) -> dict[str, Any]:
        return self._json(f"api/products/{int(product_id)}")

    def product_bytes(self, product_id: int) -> bytes:
        """A product file's content (checked against its sha256)."""
        response = self._request(f"api/products/{int(product_id)}/file")
        data = response.content
        expected = response.headers.get("X-HCDC-SHA256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise ServiceUnavailable(f"product {product_id} arrived corrupted (sha256 mismatch); try again")
        return data

    def download_product(self, product_id: int, destination: str | Path) -> Path:
        """Stream a product file to ``destination`` (a file or a folder); returns the file."""
        destination = Path(destination)
        response = self._request(f"api/products/{int(product_id)}/file", stream=True)
        if destination.is_dir():
            disposition = response.headers.get("Content-Disposition", "")
            name = (
                disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else f"product_{product_id}"
            )
            destination = destination / Path(name).name
        digest = hashlib.sha256()
        partial = destination.with_name(destination.name + ".part")
        with partial.open("wb") as handle:
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                handle.write(chunk)
        expected = response.headers.get("X-HCDC-SHA256")
        if expected and digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ServiceUnavailable(f"product {product_id} arrived corrupted (sha256 mismatch); try again")
        partial.replace(destination)
        return destination

    # -- post-processing in a notebook (hcdc_widgets)
    def calibrated(self, observation_id: int) -> dict[str, Any]:
        """The calibrated cube / angles / psf products of an observation, with pixel scale and star flux."""
        return self._json(f"api/observations/{int(observation_id)}/calibrated")

    def load_calibrated(self, observation_id: int) -> "CalibratedInputs":
        """Download an observation's calibrated cube, angles and PSF (through the service) as arrays."""
        import io

        import numpy as np
        from astropy.io import fits

        info = self.calibrated(observation_id)
        arrays = {}
        for kind in ("cube", "angles", "psf"):
            data = self.product_bytes(info["products"][kind]["id"])
            with fits.open(io.BytesIO(data)) as hdus:
                arrays[kind] = np.asarray(hdus[0].data, dtype=float)
        return CalibratedInputs(
            observation_id=int(observation_id),
            cube=arrays["cube"],
            angles=arrays["angles"].ravel(),
            psf=arrays["psf"],
            pixel_scale=info["pixel_scale_arcsec"],
            star_flux=list(info["star_flux"] or []),
            wavelengths_um=list(info["wavelengths_um"] or []),
            info=info,
        )

    def save_reduction(
        self, observation_id: int, payload: dict[str, Any], retry_seconds: float = SAVE_RETRY_SECONDS
    ) -> dict[str, Any]:
        """Record a post-processing run in the catalog as *your* reduction (the service checks your rights).

        ``payload``: ``parameters`` (PostprocessParameters.to_dict()), ``inputs`` ([{product_id, sha256}]),
        ``detections``, ``limits``, optional ``images`` and ``save_key``. The service records the provenance
        itself (owner, time, code version, host) and ignores any the payload claims: nothing sent names a
        file on the server. Returns the reduction's id, its release date and products, and
        ``already_saved`` (True: recorded by an earlier request under the same ``save_key``).

        A save is all or nothing. When the service does not answer (it restarts, the proxy says 502/503),
        the same save, under the same key, is sent again for up to ``retry_seconds``: the service records it
        once, whether the first attempt had committed or not. If it still does not answer,
        :class:`ServiceUnavailable` says that the save is not confirmed, and saving the same payload again
        later is safe.
        """
        payload = dict(payload)
        payload.setdefault("save_key", new_save_key())
        path = f"api/observations/{int(observation_id)}/reductions"
        deadline = time.monotonic() + max(float(retry_seconds), 0.0)
        pause = 0.25
        while True:
            try:
                return self._request(path, method="POST", body=payload).json()
            except ServiceUnavailable as exc:
                if exc.status not in (None, 502, 503, 504, 599):
                    raise
                if time.monotonic() + pause > deadline:
                    raise ServiceUnavailable(
                        f"{exc.message}. The save (key {payload['save_key']}) is not confirmed: it was recorded "
                        f"whole or not at all; save again when the service is back (the same key is sent, so it "
                        f"is never recorded twice)",
                        status=exc.status,
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 4.0)


class CalibratedInputs:
    """An observation's calibrated products as arrays (``cube`` (λ, t, y, x) or (t, y, x))."""

    def __init__(self, observation_id, cube, angles, psf, pixel_scale, star_flux, wavelengths_um, info):
        self.observation_id, self.cube, self.angles, self.psf = observation_id, cube, angles, psf
        self.pixel_scale, self.star_flux, self.wavelengths_um, self.info = pixel_scale, star_flux, wavelengths_um, info

    @property
    def n_bands(self) -> int:
        return self.cube.shape[0] if self.cube.ndim == 4 else 1

    def band(self, index: int = 0):
        """(cube, psf, star_flux, wavelength) of one wavelength."""
        cube = self.cube[index] if self.cube.ndim == 4 else self.cube
        psf = self.psf[index] if self.psf.ndim == 3 else self.psf
        flux = self.star_flux[index] if index < len(self.star_flux) and self.star_flux[index] else None
        wave = self.wavelengths_um[index] if index < len(self.wavelengths_um) else None
        return cube, psf, (float(flux) if flux else None), wave

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """[{product_id, sha256}] of the cube, angles and psf, for :meth:`CatalogClient.save_reduction`."""
        return [{"product_id": p["id"], "sha256": p["sha256"]} for p in self.info["products"].values()]
