"""The public VO service: the released part of the catalog over TAP/ADQL, ObsCore, cone search and DataLink.

GAVO DaCHS (Debian's ``python3-gavo``) is the VO server; HC-DC decides what it serves:

* ``hcdc vo setup`` creates the instance under ``<data_dir>/vo`` (DaCHS' ``rootDir``): its own
  PostgreSQL cluster (``vo/postgres``, scram-sha-256 only, 127.0.0.1, port ``vo_pg_port``, with
  pgSphere and q3c), ``dachs init`` on it, the configuration ``vo/etc/gavo.rc`` (limits from the
  settings) and the resource descriptor ``vo/inputs/hcdc/q.rd``, generated here from the same column
  definitions as ``hcdc catalog ...`` (:mod:`hcdc.tables`) with units and UCDs from
  :mod:`hcdc.catalog.units`; ``dachs imp`` creates the tables and their TAP_SCHEMA entries.
* ``hcdc vo publish`` reads the catalog (``HCDC_CATALOG_URL``), keeps the rows the access rule makes
  public (:func:`hcdc.access.is_released`: a release date, reached; a target only with a released
  observation; a derived row only when its own, inherited release date is reached) and brings the VO
  tables to exactly that, row by row, in one transaction: it inserts, updates and withdraws only
  what differs, and says how many of each. Released product files are placed (hard link or copy,
  named by their SHA-256 and checked against the catalog's) in ``vo/inputs/hcdc/products``, the only
  folder the VO's file service serves.
* ``hcdc vo serve`` runs ``dachs serve start --foreground`` on 127.0.0.1.

The VO server never connects to the catalog database: its own holds the released rows and nothing else,
so no query, however crafted, can return a proprietary row. It runs as the service account (like the
catalog service and the dashboards); a separate account would need the VO root outside the data
directory, which is closed to every other account.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

RD_ID = "hcdc/q"
SCHEMA = "hcdc"
#: DaCHS' file layout under the instance root (dachs init makes the rest)
PRODUCT_FOLDER = "products"

#: product kinds published in ivoa.obscore: kind -> (dataproduct_type, calib_level, description); an IRDIS
#: dual-band product carries its band as a suffix (``residuals_b1``, ``contrast_curve_b2``)
PUBLISHED_PRODUCTS: dict[str, tuple[str, int, str]] = {
    "cube": ("cube", 2, "Pre-processed, centred, registered cube (t, y, x) or (lambda, t, y, x)"),
    "residuals": ("image", 3, "Post-processed residual image (star subtracted, derotated, north up)"),
    "channel_residuals": ("cube", 3, "Post-processed residual image per IFS channel (lambda, y, x)"),
    "snrmap": ("image", 3, "S/N map of the residual image"),
    "contrast_curve": ("measurements", 3, "Detection limit (contrast curve) as a table"),
    "spectra": ("spectrum", 3, "Spectra of the IFS detections (contrast per channel) as a table"),
}
_BAND_SUFFIX = re.compile(r"^(?P<kind>.+?)(?:_b(?P<band>\d+))?$")


def product_kind(kind: str) -> tuple[str, int | None]:
    """(base kind, band number or None) of a product kind (``residuals_b2`` -> ``("residuals", 2)``)."""
    match = _BAND_SUFFIX.match(kind)
    band = match.group("band")
    return match.group("kind"), int(band) if band else None


class VOError(RuntimeError):
    """The VO instance cannot be set up, published or served (the message says why and what to do)."""


# --- what is served: tables, columns, rows --------------------------------------------------------


@dataclass(frozen=True)
class VOColumn:
    """One column of a served table."""

    name: str
    type: str  #: PostgreSQL type
    unit: str | None  #: VOUnit string
    ucd: str | None
    description: str


@dataclass(frozen=True)
class VOTableSpec:
    """One served table: its columns, its key, and the released rows it holds."""

    name: str
    description: str
    columns: tuple[VOColumn, ...]
    key: tuple[str, ...]
    rows: Callable[[Any, date], list[dict[str, Any]]] = field(repr=False, compare=False)
    #: extra RD material (mixins), inserted in the <table> element
    mixins: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


INTEGER_COLUMNS = frozenset(
    {"id", "ob_id", "detection", "reduction", "curve", "product", "observation_id", "n_observations"}
)
#: integer columns never NULL (the others get nullLiteral -1 in VOTables)
REQUIRED_COLUMNS = frozenset({"id", "observation", "reduction", "product", "detection", "curve", "n_observations"})
FLOAT_NAMES = re.compile(r"^(snr|fpf|contrast.*|throughput|airmass|sigma)$")

#: (served table, column) -> UCD, where the catalog's own (hcdc.catalog.units.UCDS) does not say
VO_UCDS: dict[tuple[str, str], str] = {
    ("observations", "observation"): "meta.id;meta.main",
    ("observations", "ra_deg"): "pos.eq.ra;meta.main",
    ("observations", "dec_deg"): "pos.eq.dec;meta.main",
    ("observations", "target"): "meta.id;src",
    ("observations", "instrument"): "meta.id;instr",
    ("targets", "target"): "meta.id;meta.main",
    ("detections", "detection"): "meta.id;meta.main",
    ("detection_limits", "sep_arcsec"): "pos.angDistance",
    ("detection_limits", "contrast"): "phot.flux;arith.ratio;stat.max",
    ("detection_limits", "wavelength_um"): "em.wl",
    ("spectra", "wavelength_um"): "em.wl",
}
#: served table -> catalog table whose UCDs apply to its columns
UCD_SOURCE = {
    "observations": "observations",
    "detections": "detections",
    "detection_limits": "detection_limit_points",
    "spectra": "spectra",
    "targets": "targets",
}


def _vounit(unit: str | None) -> str | None:
    if not unit:
        return None
    import astropy.units as u

    return u.Unit(unit).to_string("vounit")


def _pg_type(table: str, name: str, unit: str | None) -> str:
    if table == "observations" and name == "observation":
        return "text"  # the observation key
    if name in INTEGER_COLUMNS or name.startswith("n_") or name == "observation":
        return "bigint"
    if unit or FLOAT_NAMES.match(name):
        return "double precision"
    return "text"


#: catalog column names that are ADQL reserved words (PI() is a function) -> their name in the VO tables
ADQL_RENAMES = {"pi": "pi_name"}


def _columns(table: str, definitions: Iterable[tuple[str, str | None, str]]) -> tuple[VOColumn, ...]:
    from .catalog.units import UCDS

    source = UCD_SOURCE.get(table, table)
    return tuple(
        VOColumn(
            ADQL_RENAMES.get(name, name),
            _pg_type(table, name, unit),
            _vounit(unit),
            VO_UCDS.get((table, name)) or UCDS.get((source, name)),
            description,
        )
        for name, unit, description in definitions
    )


def _plain(value: Any) -> Any:
    """A Python value of an astropy table cell (masked -> None, numpy scalars -> int/float/str)."""
    import numpy as np

    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return value


def table_rows(table) -> list[dict[str, Any]]:
    """The rows of an astropy table as plain dicts (masked cells -> None; ADQL reserved names renamed)."""
    names = table.colnames
    rows = []
    for row in table:
        mask = getattr(row, "mask", None)
        rows.append(
            {
                ADQL_RENAMES.get(name, name): (None if mask is not None and bool(mask[name]) else _plain(row[name]))
                for name in names
            }
        )
    return rows


def released(day: str | date | None, today: date) -> bool:
    from .access import is_released

    if isinstance(day, str):
        day = date.fromisoformat(day) if day else None
    return is_released(day, today)


def _released_observation_ids(session, today: date) -> set[int]:
    from sqlalchemy import select

    from .access import Principal, visibility_filter
    from .catalog.models import Observation

    public = Principal(username="", known=False)
    return set(session.scalars(select(Observation.id).where(visibility_filter(Observation, public, today))))


def _finished_campaigns(session) -> list:
    from sqlalchemy import select

    from .catalog.models import Campaign

    return list(
        session.scalars(select(Campaign).where(Campaign.finished_at.isnot(None)).order_by(Campaign.finished_at))
    )


def _observation_rows(session, today: date) -> list[dict[str, Any]]:
    from .tables import observations_table

    ids = _released_observation_ids(session, today)
    rows = table_rows(observations_table(session, visible_ids=ids)) if ids else []
    return [row for row in rows if released(row["release_date"], today)]


TARGET_COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("target", None, "Target name (as in hcdc.observations.target)"),
    ("ra_deg", "deg", "Right ascension (ICRS)"),
    ("dec_deg", "deg", "Declination (ICRS)"),
    ("pm_ra_mas_yr", "mas / yr", "Proper motion in right ascension, mu_alpha cos(delta)"),
    ("pm_dec_mas_yr", "mas / yr", "Proper motion in declination"),
    ("parallax_mas", "mas", "Parallax"),
    ("parallax_err_mas", "mas", "Parallax uncertainty (1 sigma)"),
    ("spectral_type", None, "Spectral type"),
    ("mass_msun", "solMass", "Stellar mass"),
    ("age_myr", "Myr", "Age"),
    ("aliases", None, "Other names of the target, '; '-separated"),
    ("n_observations", None, "Released observations of the target"),
)


def _target_rows(session, today: date) -> list[dict[str, Any]]:
    from collections import Counter

    from sqlalchemy import select

    from .catalog.models import Observation, Target

    ids = _released_observation_ids(session, today)
    counts = Counter(
        session.scalars(select(Observation.target_id).where(Observation.id.in_(sorted(ids)))) if ids else []
    )
    rows = []
    for target in session.scalars(select(Target).where(Target.id.in_(sorted(i for i in counts if i is not None)))):
        rows.append(
            {
                "target": target.name,
                "ra_deg": target.ra_deg,
                "dec_deg": target.dec_deg,
                "pm_ra_mas_yr": target.pm_ra_mas_yr,
                "pm_dec_mas_yr": target.pm_dec_mas_yr,
                "parallax_mas": target.parallax_mas,
                "parallax_err_mas": target.parallax_err_mas,
                "spectral_type": target.spectral_type,
                "mass_msun": target.mass_msun,
                "age_myr": target.age_myr,
                "aliases": "; ".join(sorted(a.alias for a in target.aliases if a.alias != target.name)) or None,
                "n_observations": counts[target.id],
            }
        )
    return rows


def _campaign_rows(builder: Callable) -> Callable[[Any, date], list[dict[str, Any]]]:
    """Rows of a campaign table (``builder(session, campaign, visible_ids)``) of every finished campaign,
    released rows only (the row's own release date, which its inputs set, and its observation's)."""

    def rows(session, today: date) -> list[dict[str, Any]]:
        ids = _released_observation_ids(session, today)
        found: list[dict[str, Any]] = []
        if not ids:
            return found
        for campaign in _finished_campaigns(session):
            for row in table_rows(builder(session, campaign, visible_ids=ids)):
                if row["observation"] in ids and released(row["release_date"], today):
                    found.append(row)
        return found

    return rows


#: the ObsCore columns of hcdc.products (DaCHS' //obscore#ObsCore definitions), then HC-DC's own
OBSCORE_COLUMNS = (
    "dataproduct_type",
    "dataproduct_subtype",
    "calib_level",
    "obs_collection",
    "obs_id",
    "obs_title",
    "obs_publisher_did",
    "obs_creator_did",
    "access_url",
    "access_format",
    "access_estsize",
    "target_name",
    "target_class",
    "s_ra",
    "s_dec",
    "s_fov",
    "s_region",
    "s_resolution",
    "t_min",
    "t_max",
    "t_exptime",
    "t_resolution",
    "em_min",
    "em_max",
    "em_res_power",
    "o_ucd",
    "pol_states",
    "facility_name",
    "instrument_name",
    "s_xel1",
    "s_xel2",
    "t_xel",
    "em_xel",
    "pol_xel",
    "s_pixel_scale",
    "em_ucd",
    "preview",
    "source_table",
)
PRODUCT_COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("product", None, "Product id (catalog)"),
    (
        "product_kind",
        None,
        "HC-DC product kind (cube, residuals, channel_residuals, snrmap, contrast_curve, spectra; "
        "_b1/_b2: the IRDIS band)",
    ),
    ("observation", None, "Observation id (hcdc.observations.id)"),
    ("reduction", None, "Reduction id (provenance)"),
    ("sha256", None, "SHA-256 of the file (as the catalog records it)"),
    ("file_name", None, "Name of the file the DataLink service serves"),
    ("mime", None, "Media type of the file"),
    ("release_date", None, "First day the product is public (the latest release date of its inputs)"),
)


def _mjd(moment) -> float | None:
    if moment is None:
        return None
    from astropy.time import Time

    return float(Time(moment, scale="utc").mjd)


def _reduction_wavelengths(session, reduction_id: int) -> list[float]:
    """The wavelengths (um) of a reduction's detection limits, ascending (IRDIS band 1, band 2)."""
    from sqlalchemy import select

    from .catalog.models import DetectionLimit

    found = session.scalars(
        select(DetectionLimit.wavelength_um).where(
            DetectionLimit.reduction_id == reduction_id, DetectionLimit.wavelength_um.is_not(None)
        )
    )
    return sorted(set(found))


def product_rows_for(session, today: date, authority: str, server_url: str) -> list[dict[str, Any]]:
    """hcdc.products rows: the released products of the finished campaigns' reductions."""
    from sqlalchemy import select

    from .catalog.models import CampaignReduction, Observation, Product, Target

    ids = _released_observation_ids(session, today)
    if not ids:
        return []
    campaign_ids = [c.id for c in _finished_campaigns(session)]
    kinds = sorted({f"{k}_b{n}" for k in PUBLISHED_PRODUCTS for n in (1, 2)} | set(PUBLISHED_PRODUCTS))
    query = (
        select(Product, Observation, Target)
        .join(Observation, Observation.id == Product.observation_id)
        .outerjoin(Target, Target.id == Observation.target_id)
        .join(CampaignReduction, CampaignReduction.reduction_id == Product.reduction_id)
        .where(
            CampaignReduction.campaign_id.in_(campaign_ids),
            Product.kind.in_(kinds),
            Observation.id.in_(sorted(ids)),
        )
        .order_by(Product.id)
    )
    rows: dict[int, dict[str, Any]] = {}
    wavelengths: dict[int, list[float]] = {}
    for product, obs, target in session.execute(query):
        if product.id in rows or not released(product.release_date, today):
            continue
        base_kind, band = product_kind(product.kind)
        kind_type, level, what = PUBLISHED_PRODUCTS[base_kind]
        suffix = "".join(Path(product.path).suffixes[-2:]) or ".dat"
        did = f"ivo://{authority}/hcdc?product/{product.id}"
        if product.reduction_id not in wavelengths:  # one query per reduction, not per product
            wavelengths[product.reduction_id] = _reduction_wavelengths(session, product.reduction_id)
        bands = wavelengths[product.reduction_id]
        if band is not None and band <= len(bands):
            em_min = em_max = bands[band - 1]
        else:
            em_min, em_max = (min(bands), max(bands)) if bands else (None, None)
        rows[product.id] = {
            "dataproduct_type": kind_type,
            "dataproduct_subtype": product.kind,
            "calib_level": level,
            "obs_collection": "HC-DC",
            "obs_id": obs.key,
            "obs_title": f"{what}: {target.name if target else '?'} {obs.night.isoformat()} {obs.instrument}",
            "obs_publisher_did": did,
            "access_url": f"{server_url}/{RD_ID}/dl/dlmeta?ID={urllib.parse.quote(did, safe='')}",
            "access_format": "application/x-votable+xml;content=datalink",
            "access_estsize": max(1, math.ceil(product.size_bytes / 1024)),
            "target_name": target.name if target else None,
            "s_ra": target.ra_deg if target else None,
            "s_dec": target.dec_deg if target else None,
            "t_min": _mjd(obs.date_start),
            "t_max": _mjd(obs.date_end),
            "t_exptime": obs.exposure_time_s,
            "em_min": em_min * 1e-6 if em_min else None,
            "em_max": em_max * 1e-6 if em_max else None,
            "o_ucd": "phot.count" if base_kind == "cube" else "phot.flux;arith.ratio",
            "facility_name": "ESO-VLT-U3" if obs.instrument.startswith("SPHERE") else "ESO-VLT",
            "instrument_name": obs.instrument,
            "source_table": f"{SCHEMA}.products",
            "product": product.id,
            "product_kind": product.kind,
            "observation": obs.id,
            "reduction": product.reduction_id,
            "sha256": product.sha256,
            "file_name": f"{product.sha256}{suffix}",
            "mime": "application/fits" if ".fits" in suffix else "application/octet-stream",
            "release_date": product.release_date.isoformat(),
            "_source_path": product.path,
        }
        # the ObsCore columns HC-DC has no value for: NULL in ivoa.obscore
        rows[product.id].update({name: None for name in OBSCORE_COLUMNS if name not in rows[product.id]})
    return list(rows.values())


def table_specs() -> tuple[VOTableSpec, ...]:
    """The served tables of schema ``hcdc`` (hcdc.products is built by :func:`product_rows_for`)."""
    from .tables import (
        DETECTION_COLUMNS,
        LIMIT_COLUMNS,
        OBSERVATION_COLUMNS,
        SPECTRUM_COLUMNS,
        detections_table,
        limits_table,
        spectra_table,
    )

    def no_rows(session, today):
        raise NotImplementedError  # hcdc.products needs the server URL: product_rows_for

    obscore_like = tuple(VOColumn(name, "", None, None, "") for name in OBSCORE_COLUMNS)
    return (
        VOTableSpec(
            "targets",
            "Targets with at least one released observation: position, proper motion, parallax, "
            "spectral type, mass and age as the catalog holds them. Cone search: the service hcdc/q/cone.",
            _columns("targets", TARGET_COLUMNS),
            ("target",),
            _target_rows,
            mixins=("//scs#q3cindex",),
        ),
        VOTableSpec(
            "observations",
            "Released observations (one row per observation; the key in column observation is what "
            "'hcdc catalog observations' prints), with observing conditions and field rotation.",
            _columns("observations", OBSERVATION_COLUMNS),
            ("observation",),
            _observation_rows,
        ),
        VOTableSpec(
            "detections",
            "Point sources detected by the systematic campaigns in released observations: separation, "
            "position angle and contrast with their 1-sigma error budget, S/N and false-positive fraction. "
            "One row per (campaign, detection).",
            _columns("detections", DETECTION_COLUMNS),
            ("campaign", "detection"),
            _campaign_rows(detections_table),
        ),
        VOTableSpec(
            "detection_limits",
            "Detection limits (non-detections): the contrast reached at each separation, one row per "
            "(campaign, curve, separation); column curve groups the points of one curve.",
            _columns("detection_limits", LIMIT_COLUMNS),
            ("campaign", "curve", "sep_arcsec"),
            _campaign_rows(limits_table),
        ),
        VOTableSpec(
            "spectra",
            "Spectra of detections in released SPHERE IFS observations: contrast per channel with its "
            "1-sigma error; one row per (campaign, detection, channel).",
            _columns("spectra", SPECTRUM_COLUMNS),
            ("campaign", "detection", "wavelength_um"),
            _campaign_rows(spectra_table),
        ),
        VOTableSpec(
            "products",
            "Released products of the systematic campaigns (cubes, residual images, S/N maps, contrast "
            "curves), in ObsCore form; published in ivoa.obscore. access_url is the DataLink service "
            "hcdc/q/dl, which serves the file.",
            obscore_like + _columns("products", PRODUCT_COLUMNS),
            ("obs_publisher_did",),
            no_rows,
            mixins=("//obscore#publishObscoreLike",),
        ),
    )


# --- the resource descriptor -------------------------------------------------------------------------


def _attr(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(text)


def resource_descriptor(specs: tuple[VOTableSpec, ...] | None = None) -> str:
    """DaCHS' resource descriptor of the served tables and services (generated: one source of truth)."""
    from xml.sax.saxutils import escape

    specs = specs or table_specs()
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<!-- generated by hcdc.vo.resource_descriptor: edit the code, not this file -->",
        f'<resource schema="{SCHEMA}">',
        '  <meta name="title">HC-DC: released high-contrast imaging catalog</meta>',
        '  <meta name="description">The released part of the HC-DC catalog: targets, observations and '
        "their conditions, detections with their error budgets, detection limits (non-detections), IFS "
        "spectra, and the products (cubes, residual images, S/N maps, contrast curves) of the systematic "
        "reduction campaigns of direct-imaging data (VLT/SPHERE, NACO). Nothing under a proprietary period "
        "is served.</meta>",
        '  <meta name="creationDate">2026-12-03T00:00:00Z</meta>',
        '  <meta name="subject">exoplanets</meta>',
        '  <meta name="subject">direct-imaging</meta>',
        '  <meta name="subject">circumstellar-disks</meta>',
        '  <meta name="creator.name">HC-DC</meta>',
        '  <meta name="contentLevel">Research</meta>',
        '  <meta name="type">Catalog</meta>',
        '  <meta name="facility">ESO VLT</meta>',
    ]
    for spec in specs:
        primary = ",".join(spec.key)
        if spec.name == "products":
            parts.append(
                f'  <table id="{spec.name}" onDisk="True" adql="True" primary="{primary}" namePath="//obscore#ObsCore">'
            )
        else:
            parts.append(f'  <table id="{spec.name}" onDisk="True" adql="True" primary="{primary}">')
        parts.append(f'    <meta name="description">{escape(spec.description)}</meta>')
        for mixin in spec.mixins:
            parts.append(f"    <mixin>{mixin}</mixin>")
        for column in spec.columns:
            if spec.name == "products" and column.name in OBSCORE_COLUMNS:
                parts.append(f'    <column original="{column.name}"/>')
                continue
            attributes = [f'name="{column.name}"', f'type="{column.type}"']
            if column.unit:
                attributes.append(f"unit={_attr(column.unit)}")
            if column.ucd:
                attributes.append(f"ucd={_attr(column.ucd)}")
            if column.name in spec.key or column.name in REQUIRED_COLUMNS:
                attributes.append('required="True"')
            attributes.append(f"description={_attr(column.description)}")
            if column.type == "bigint" and 'required="True"' not in attributes:
                # VOTable integers have no NULL of their own: DaCHS writes this value for one
                parts.append(f'    <column {" ".join(attributes)}><values nullLiteral="-1"/></column>')
            else:
                parts.append(f"    <column {' '.join(attributes)}/>")
        parts.append("  </table>")
    parts.append('  <data id="import">')
    parts.extend(f'    <make table="{spec.name}"/>' for spec in specs)
    parts.append("  </data>")
    parts.append(
        """  <service id="cone" allowed="scs.xml,form">
    <meta name="title">HC-DC targets cone search</meta>
    <meta name="shortName">HC-DC cone</meta>
    <meta name="description">Targets of HC-DC with at least one released observation, by position.</meta>
    <meta name="testQuery.ra">0</meta>
    <meta name="testQuery.dec">0</meta>
    <meta name="testQuery.sr">1</meta>
    <scsCore queriedTable="targets">
      <FEED source="//scs#coreDescs"/>
    </scsCore>
  </service>
  <service id="dl" allowed="dlmeta,static">
    <meta name="title">HC-DC products DataLink</meta>
    <meta name="description">Links to the files of the released HC-DC products (ivoa.obscore.access_url).</meta>
    <property name="staticData">products</property>
    <datalinkCore>
      <descriptorGenerator>
        <code>
          with base.getTableConn() as conn:
            found = list(conn.query(
              "SELECT file_name, mime FROM hcdc.products WHERE obs_publisher_did=%(did)s",
              {"did": pubDID}))
          if not found:
            return DatalinkFault.NotFoundFault(pubDID,
              "No released HC-DC product has this identifier")
          descriptor = ProductDescriptor(pubDID, found[0][0], "hcdc/products/" + found[0][0], found[0][1])
          descriptor.suppressAutoLinks = True
          return descriptor
        </code>
      </descriptorGenerator>
      <metaMaker semantics="#this">
        <code>
          yield descriptor.makeLinkFromFile("products/" + descriptor.accref,
            description="The product file (its SHA-256 is hcdc.products.sha256)",
            semantics="#this", service=self.parent.rd.getById("dl"), contentType=descriptor.mime)
        </code>
      </metaMaker>
    </datalinkCore>
  </service>
</resource>
"""
    )
    return "\n".join(parts)


# --- the system: pgSphere on PostgreSQL 15 ---------------------------------------------------------------

#: the two operators pgSphere kept for old DaCHS versions; PostgreSQL >= 15.8 (stricter commutator checks,
#: backported from 17) refuses them, so CREATE EXTENSION pg_sphere fails on Debian 12's pgSphere 1.1.1.
#: Upstream dropped them (postgrespro/pgsphere#85, PR #92); DaCHS does not use them.
_PGSPHERE_COMPAT = re.compile(
    r"-- a minimal set of backwards-compatible operators for GAVO DaCHS,\n-- see http://soft\.g-vo\.org/dachs\n+"
    r"(CREATE OPERATOR @ \([^;]*?RIGHTARG\s*=\s*smoc,[^;]*?\);\s*){2}"
)


def pgsphere_scripts() -> list[Path]:
    """The installed pgSphere install scripts (``pg_sphere--<default_version>.sql`` of each PostgreSQL)."""
    found = []
    for control in Path("/usr/share/postgresql").glob("*/extension/pg_sphere.control"):
        match = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text())
        if match:
            script = control.with_name(f"pg_sphere--{match.group(1)}.sql")
            if script.is_file():
                found.append(script)
    return found


def ensure_pgsphere_loadable(say: Callable[[str], None] = print) -> list[str]:
    """Apply upstream's fix (drop the two compatibility operators) to Debian's pgSphere script, as root.

    Done the Debian way, with ``dpkg-divert`` (the packaged file is kept as ``.distrib`` and a package
    upgrade does not overwrite the fix). Not root and not fixed: :class:`VOError` saying what to run.
    """
    done = []
    scripts = pgsphere_scripts()
    if not scripts:
        raise VOError(
            "pgSphere is not installed: apt-get install postgresql-15-pgsphere postgresql-15-q3c python3-gavo "
            "(make system-deps does it as root)"
        )
    for script in scripts:
        text = script.read_text()
        if not _PGSPHERE_COMPAT.search(text):
            continue
        if os.geteuid() != 0:
            raise VOError(
                f"{script} still defines pgSphere's old compatibility operators, which this PostgreSQL refuses "
                "(CREATE EXTENSION pg_sphere fails): run 'hcdc vo setup' or 'make system-deps' once as root"
            )
        diverted = script.with_name(script.name + ".distrib")
        if not diverted.exists():
            subprocess.run(
                ["dpkg-divert", "--quiet", "--local", "--rename", "--divert", str(diverted), "--add", str(script)],
                check=True,
            )
            text = diverted.read_text()
        script.write_text(_PGSPHERE_COMPAT.sub("", text))
        script.chmod(0o644)
        done.append(f"{script}: pgSphere's two compatibility operators removed (upstream fix; original {diverted})")
        say(done[-1])
    return done


# --- the instance ------------------------------------------------------------------------------------


@dataclass
class PublishReport:
    """What ``hcdc vo publish`` changed, per table: (added, changed, withdrawn, unchanged)."""

    tables: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    files_copied: int = 0
    files_removed: int = 0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"  {SCHEMA}.{name:<17} {added} added, {changed} updated, {withdrawn} withdrawn, {same} unchanged"
            for name, (added, changed, withdrawn, same) in self.tables.items()
        ]
        out.append(f"  product files: {self.files_copied} placed, {self.files_removed} removed")
        out += [f"  NOT PUBLISHED: {p}" for p in self.problems]
        return out

    @property
    def changed(self) -> int:
        """Rows added, updated or withdrawn, all tables together."""
        return sum(a + c + w for a, c, w, _ in self.tables.values())


class VOInstance:
    """The DaCHS instance under ``root`` (normally ``<data_dir>/vo``)."""

    def __init__(self, settings):
        from .pgcluster import ProjectCluster

        self.settings = settings
        self.root: Path = settings.data_dir / "vo"
        self.port: int = settings.vo_port
        self.cluster = ProjectCluster(self.root / "postgres", settings.vo_pg_port, settings.service_user, "gavo")

    # layout
    @property
    def rc_file(self) -> Path:
        return self.root / "etc" / "gavo.rc"

    @property
    def rd_file(self) -> Path:
        return self.root / "inputs" / "hcdc" / "q.rd"

    @property
    def product_dir(self) -> Path:
        return self.root / "inputs" / "hcdc" / PRODUCT_FOLDER

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tap_url(self) -> str:
        return f"{self.server_url}/tap"

    @property
    def authority(self) -> str:
        return self.settings.vo_authority

    # --- running DaCHS ---------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": os.environ.get("HOME", str(self.root)),
            "LANG": "C.UTF-8",
            "GAVOSETTINGS": str(self.rc_file),
            "GAVOCUSTOM": "/nonexistent",  # never a ~/.gavorc of whoever runs this
            "PGPASSFILE": str(self.cluster.passfile),
        }

    def dachs(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        dachs = shutil.which("dachs", path="/usr/bin:/bin")
        if dachs is None:
            raise VOError(
                "GAVO DaCHS is not installed: apt-get install python3-gavo postgresql-15-pgsphere "
                "postgresql-15-q3c (make system-deps does it as root)"
            )
        done = subprocess.run(
            [dachs, *args], env=self.environment(), capture_output=True, text=True, cwd=self.root, timeout=timeout
        )
        if check and done.returncode != 0:
            raise VOError(f"dachs {' '.join(args)} failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
        return done

    def write_configuration(self) -> bool:
        """gavo.rc from the settings; True when it changed."""
        import grp
        import pwd

        s = self.settings
        who = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(who.pw_gid).gr_name
        text = (
            "# generated by hcdc vo setup from the HC-DC settings: edit those, not this file\n"
            "[general]\n"
            f"rootDir: {self.root}\n"
            f"gavoGroup: {group}\n"
            f"group: {group}\n"
            "logLevel: warning\n"
            "\n[web]\n"
            f"serverURL: {self.server_url}\n"
            "bindAddress: 127.0.0.1\n"
            f"serverPort: {self.port}\n"
            f"user: {who.pw_name}\n"
            "sitename: HC-DC\n"
            "adminpasswd:\n"
            "enableTests: False\n"
            f"sqlTimeout: {s.vo_sync_timeout_s}\n"
            "\n[async]\n"
            f"defaultExecTimeSync: {s.vo_sync_timeout_s}\n"
            f"defaultExecTime: {s.vo_async_timeout_s}\n"
            f"defaultLifetime: {s.vo_job_retention_s}\n"
            f"defaultMAXREC: {s.vo_max_rows}\n"
            f"hardMAXREC: {s.vo_hard_max_rows}\n"
            "\n[ivoa]\n"
            f"authority: {self.authority}\n"
            f"dalDefaultLimit: {s.vo_max_rows}\n"
            f"dalHardLimit: {s.vo_hard_max_rows}\n"
        )
        return _write_if_changed(self.rc_file, text)

    def initialised(self) -> bool:
        return (self.root / "etc" / "feed").is_file() and (self.root / "state" / "hcdc-initialised").is_file()

    def setup(self, say: Callable[[str], None] = print) -> list[str]:
        """Create (or bring up to date) the instance; start its database. What was done."""
        done: list[str] = []
        for folder in (self.root, self.root / "etc"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        done += self.cluster.start()
        if self.write_configuration():
            done.append(f"wrote {self.rc_file}")
        if not self.initialised():
            say("initialising DaCHS (dachs init: roles, pgSphere, q3c, system tables) ...")
            if not (self.root / "etc" / "defaultmeta.txt").is_file():
                _write_defaultmeta(self.root / "etc" / "defaultmeta.txt")
            self.dachs("init", "-d", f"host=127.0.0.1 port={self.cluster.port} dbname=gavo user=postgres")
            self.dachs("imp", "//obscore")  # ivoa.obscore, which hcdc.products joins
            (self.root / "state").mkdir(exist_ok=True)
            (self.root / "state" / "hcdc-initialised").write_text("dachs init done\n")
            done.append(f"initialised DaCHS in {self.root} on PostgreSQL 127.0.0.1:{self.cluster.port}")
        self.product_dir.mkdir(parents=True, exist_ok=True)
        descriptor = resource_descriptor()
        _write_if_changed(self.rd_file, descriptor)
        imported = self.root / "state" / "hcdc-imported"  # the SHA-256 of the descriptor last imported
        if not imported.is_file() or imported.read_text().strip() != _sha256_text(descriptor):
            say(f"importing {RD_ID} (dachs imp: tables, TAP_SCHEMA, ivoa.obscore) ...")
            self.dachs("imp", RD_ID)  # (re)creates the tables empty: publish fills them again
            imported.write_text(_sha256_text(descriptor) + "\n")
            done.append(f"imported {RD_ID}: tables {', '.join(SCHEMA + '.' + s.name for s in table_specs())}")
        return done

    # --- writing what is public ---------------------------------------------------------------------------

    def feed_connection(self):
        """A psycopg connection as DaCHS' feed role (gavoadmin), from DaCHS' own profile files."""
        import psycopg

        profile = _read_profile(self.root / "etc", "feed")
        return psycopg.connect(
            host=profile.get("host", "127.0.0.1"),
            port=int(profile.get("port", self.cluster.port)),
            dbname=profile.get("database", "gavo"),
            user=profile["user"],
            password=profile["password"],
            connect_timeout=10,
        )

    def publish(self, catalog_url: str, today: date | None = None) -> PublishReport:
        """Bring the served tables and files to exactly the released part of the catalog."""
        from .catalog.db import Catalog

        today = today or date.today()
        report = PublishReport()
        specs = table_specs()
        catalog = Catalog(catalog_url)
        try:
            with catalog.session() as session:
                wanted = {s.name: s.rows(session, today) for s in specs if s.name != "products"}
                wanted["products"] = product_rows_for(session, today, self.authority, self.server_url)
        finally:
            catalog.engine.dispose()
        wanted["products"] = self._stage_files(wanted["products"], report)
        with self.feed_connection() as conn:
            with conn.transaction():
                for spec in specs:
                    report.tables[spec.name] = _sync_table(conn, spec, wanted[spec.name])
        self._remove_stale_files({row["file_name"] for row in wanted["products"]}, report)
        return report

    def _stage_files(self, rows: list[dict[str, Any]], report: PublishReport) -> list[dict[str, Any]]:
        """Copy each released product file into the served folder, checked against its catalog SHA-256."""
        kept = []
        self.product_dir.mkdir(parents=True, exist_ok=True)
        for row in rows:
            source = Path(row.pop("_source_path"))
            target = self.product_dir / row["file_name"]
            if not target.exists():
                if not source.is_file():
                    report.problems.append(f"product {row['product']}: file missing ({source})")
                    continue
                from reduction.rawio import sha256_file

                digest = sha256_file(source)
                if digest != row["sha256"]:
                    report.problems.append(
                        f"product {row['product']}: {source} differs from its catalog SHA-256 "
                        f"({digest[:12]} != {row['sha256'][:12]}); not served until the catalog is repaired"
                    )
                    continue
                partial = target.with_name(target.name + ".part")
                partial.unlink(missing_ok=True)
                try:  # products never change in place (a new file is a new product): a link costs no space
                    os.link(source, partial)
                except OSError:  # another file system or owner: a copy
                    shutil.copyfile(source, partial)
                    os.chmod(partial, 0o600)
                partial.replace(target)
                report.files_copied += 1
            kept.append(row)
        return kept

    def _remove_stale_files(self, served: set[str], report: PublishReport) -> None:
        for path in self.product_dir.iterdir():
            if path.name not in served:
                path.unlink()
                report.files_removed += 1

    def refresh_access_urls(self) -> int:
        """Point the ObsCore access URLs at this instance's server URL (after a port change); rows changed."""
        prefix = f"{self.server_url}/{RD_ID}/dl/"
        with self.feed_connection() as conn:
            done = conn.execute(
                f"UPDATE {SCHEMA}.products SET access_url = %s || split_part(access_url, '/{RD_ID}/dl/', 2) "
                "WHERE access_url NOT LIKE %s",
                (prefix, prefix + "%"),
            )
            return done.rowcount

    def serve(self) -> None:
        """Become ``dachs serve start --foreground`` (exec: signals such as Ctrl-C or a supervisor's
        SIGTERM reach the server itself, and no orphan is left behind)."""
        os.chdir(self.root)
        os.execve("/usr/bin/dachs", ["dachs", "serve", "start", "--foreground"], self.environment())


def _sync_table(conn, spec: VOTableSpec, rows: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """Insert, update and delete so that ``hcdc.<table>`` holds exactly ``rows``; the counts."""
    from psycopg import sql

    names = spec.column_names
    table = sql.Identifier(SCHEMA, spec.name)
    cursor = conn.cursor()
    cursor.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, names)), table))
    present = {tuple(r[names.index(k)] for k in spec.key): dict(zip(names, r)) for r in cursor.fetchall()}
    wanted: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        values = {name: row.get(name) for name in names}
        key = tuple(values[k] for k in spec.key)
        if key in wanted:  # one row would silently replace the other: refuse
            raise VOError(f"{SCHEMA}.{spec.name}: two released rows have the key {dict(zip(spec.key, key))}")
        wanted[key] = values
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        table, sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names))
    )
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in spec.key)
    update = sql.SQL("UPDATE {} SET {} WHERE {}").format(
        table, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names), where
    )
    delete = sql.SQL("DELETE FROM {} WHERE {}").format(table, where)
    inserts, updates, same = [], [], 0
    for key, values in wanted.items():
        old = present.get(key)
        if old is None:
            inserts.append([values[n] for n in names])
        elif any(not _same(old[n], values[n]) for n in names):
            updates.append([values[n] for n in names] + list(key))
        else:
            same += 1
    deletes = [list(key) for key in present.keys() - wanted.keys()]
    for statement, batch in ((delete, deletes), (update, updates), (insert, inserts)):
        if batch:
            cursor.executemany(statement, batch)  # psycopg pipelines the batch: one round trip, not one per row
    added, changed, withdrawn = len(inserts), len(updates), len(deletes)
    return added, changed, withdrawn, same


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def _read_profile(config_dir: Path, name: str, depth: int = 0) -> dict[str, str]:
    """A DaCHS DB profile (``key = value`` lines, ``include other``)."""
    values: dict[str, str] = {}
    for line in (config_dir / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("include ") and depth < 3:
            values.update(_read_profile(config_dir, line.split(None, 1)[1], depth + 1))
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _write_if_changed(path: Path, text: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return False
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    partial.replace(path)
    return True


def _write_defaultmeta(path: Path) -> None:
    """DaCHS' site metadata (written before ``dachs init``, which keeps an existing file)."""
    from datetime import datetime, timezone

    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    _write_if_changed(
        path,
        "publisher: HC-DC\n"
        "contact.name: HC-DC operators\n"
        "contact.address: HC-DC, High-Contrast Data Center\n"
        "contact.email: hcdc@localhost\n"
        "creator.name: HC-DC\n"
        "_noresultwarning: Your query did not match any released data.\n"
        f"authority.creationDate: {created}\n"
        "authority.shortName: HC-DC\n"
        "authority.title: HC-DC\n"
        "site.description: The public, released part of the HC-DC high-contrast imaging catalog "
        "(direct imaging of exoplanets and circumstellar disks).\n",
    )


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
