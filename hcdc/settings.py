"""One validated configuration for every HC-DC command, service and notebook.

Values come, lowest priority first, from the defaults below, an optional YAML
file (``HCDC_CONFIG=/path/to/hcdc.yaml``), and environment variables
``HCDC_<FIELD>`` (``HCDC_CATALOG_URL``, ``HCDC_DATA_DIR``, ...). Every field
has help text; ``hcdc config show`` prints the resolved values and where each
came from, and ``hcdc config schema`` the JSON schema.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hcdc"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the file named by ``HCDC_CONFIG`` (if any)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = os.environ.get("HCDC_CONFIG")
        self._values: dict[str, Any] = {}
        if path:
            file = Path(path)
            if not file.is_file():
                raise FileNotFoundError(f"HCDC_CONFIG={path}: no such configuration file")
            loaded = yaml.safe_load(file.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"HCDC_CONFIG={path}: expected a mapping of settings, got {type(loaded).__name__}")
            self._values = loaded

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class Settings(BaseSettings):
    """HC-DC settings (see the module docstring for where they come from)."""

    model_config = SettingsConfigDict(env_prefix="HCDC_", extra="forbid", validate_default=True)

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Root for products, reports, logs and the default SQLite catalog (HCDC_DATA_DIR).",
    )
    catalog_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalog (HCDC_CATALOG_URL), e.g. "
        "postgresql+psycopg://hcdc@127.0.0.1:5432/hcdc. Default: SQLite file "
        "<data_dir>/catalog.sqlite.",
    )
    reference_data: Path | None = Field(
        default=None,
        description="Folder of real reference data (HCDC_REFERENCE_DATA); default: "
        "../shared/data beside the repository when it exists.",
    )
    known_companions: Path | None = Field(
        default=None,
        description="Staff table of known companions (HCDC_KNOWN_COMPANIONS): CSV/ECSV with host, name, "
        "sep_arcsec, pa_deg and optionally sep_err_arcsec, pa_err_deg, epoch_year, reference; read with "
        "the reference data's DIplanets.txt when detections are linked into sources.",
    )
    service_user: str = Field(
        default="hcdc-service",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Unprivileged OS account HC-DC's services and pipeline run as (HCDC_SERVICE_USER); it owns "
        "the data directory (0700/0600). Run as root on a data directory it owns, the hcdc commands "
        "switch to it; the hub starts the catalog and dashboards services as it.",
    )
    proprietary_months: int = Field(
        default=12,
        ge=0,
        le=120,
        description="Default proprietary period of science data in months (ESO: 12). "
        "A programme's own period in the programme table wins.",
    )
    ingest_batch_size: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Raw files recorded per database transaction during ingest.",
    )
    ingest_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes reading FITS headers in parallel during ingest (1 = in the calling process).",
    )

    pipeline_retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="How many times a failing pipeline step is retried before it is recorded as failed.",
    )
    local_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Worker processes of the local dask cluster (executor 'local').",
    )
    slurm_queue: str | None = Field(
        default=None, description="SLURM partition for executor 'slurm' (None: the cluster's default)."
    )
    slurm_cores: int = Field(default=1, ge=1, le=256, description="Cores per SLURM job (one dask worker per job).")
    slurm_memory: str = Field(default="4GB", description="Memory per SLURM job, dask-jobqueue syntax (e.g. 4GB).")
    slurm_walltime: str = Field(default="01:00:00", description="Wall time per SLURM job (HH:MM:SS).")
    slurm_jobs: int = Field(default=2, ge=1, le=10_000, description="SLURM jobs (dask workers) to start.")
    slurm_job_extra_directives: list[str] = Field(
        default_factory=list,
        description="Extra #SBATCH lines, e.g. ['--account=hcdc', '--qos=normal'].",
    )

    vo_port: int = Field(
        default=8090,
        ge=1024,
        le=65535,
        description="Port on 127.0.0.1 of the public VO service (hcdc vo serve; TAP at http://127.0.0.1:PORT/tap).",
    )
    vo_pg_port: int = Field(
        default=5434,
        ge=1024,
        le=65535,
        description="Port on 127.0.0.1 of the VO service's own PostgreSQL cluster (<data_dir>/vo/postgres), "
        "which holds the released rows only.",
    )
    vo_authority: str = Field(
        default="hcdc.local",
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._~-]{2,}$",
        description="IVOA authority of the VO service (publisher DIDs are ivo://AUTHORITY/hcdc?product/ID).",
    )
    vo_max_rows: int = Field(
        default=20_000,
        ge=1,
        le=100_000_000,
        description="Rows a TAP query returns when it does not say (MAXREC default; also cone searches).",
    )
    vo_hard_max_rows: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Rows a TAP query can ever return, whatever its MAXREC or TOP.",
    )
    vo_sync_timeout_s: int = Field(
        default=60, ge=1, le=86_400, description="Time limit of a synchronous TAP query, in seconds."
    )
    vo_async_timeout_s: int = Field(
        default=3600, ge=1, le=604_800, description="Time limit of an asynchronous TAP job, in seconds."
    )
    vo_job_retention_s: int = Field(
        default=172_800,
        ge=60,
        le=2_592_000,
        description="Asynchronous TAP jobs and their results are destroyed this long after creation (seconds).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @field_validator("catalog_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from sqlalchemy.engine import make_url

        try:
            make_url(value)
        except Exception as exc:  # sqlalchemy raises ArgumentError
            raise ValueError(f"HCDC_CATALOG_URL {value!r} is not a SQLAlchemy URL: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _resolve(self) -> "Settings":
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.reference_data is None:
            candidate = Path(__file__).resolve().parents[2] / "shared" / "data"
            self.reference_data = candidate if candidate.is_dir() else None
        return self

    @property
    def resolved_catalog_url(self) -> str:
        """The catalog URL, defaulting to the SQLite file in ``data_dir``."""
        return self.catalog_url or f"sqlite:///{self.data_dir / 'catalog.sqlite'}"

    def describe(self) -> list[tuple[str, Any, str, str]]:
        """``(name, value, help, source)`` for every setting, for ``hcdc config show``.

        ``source`` says where the value came from: ``environment (HCDC_X)``, ``file (path)`` (the
        YAML named by ``HCDC_CONFIG``) or ``default``; the environment wins over the file. Catalog
        URLs are shown with their password hidden.
        """
        from_file = _YamlSource(type(self))().keys() if os.environ.get("HCDC_CONFIG") else set()
        environment = {key.upper() for key in os.environ}
        rows = []
        for name, info in type(self).model_fields.items():
            variable = f"HCDC_{name.upper()}"
            if variable in environment:
                source = f"environment ({variable})"
            elif name in from_file:
                source = f"file ({os.environ['HCDC_CONFIG']})"
            else:
                source = "default"
            value = getattr(self, name)
            if name == "catalog_url" and value:
                value = shown_url(value)
            rows.append((name, value, info.description or "", source))
        rows.append(
            (
                "resolved_catalog_url",
                shown_url(self.resolved_catalog_url),
                "The catalog actually used.",
                "catalog_url, or the SQLite file in data_dir",
            )
        )
        return rows


def shown_url(url: str) -> str:
    """A database URL with its password hidden, for messages and ``hcdc config show``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: shown as it is (validation reports it elsewhere)
        return url


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return Settings()


def get_settings(fresh: bool = False) -> Settings:
    """The process-wide settings; ``fresh=True`` re-reads the environment."""
    if fresh:
        _cached.cache_clear()
    return _cached()
