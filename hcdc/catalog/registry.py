"""Programmes, users and targets: lookups and table loaders shared by commands.

A programme table is the data center's export of the observatory's programme
database (PI and co-Is are not all in raw headers); a target table carries
the physical properties (SIMBAD/Gaia-like) that raw headers do not.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from pathlib import Path
from typing import Any

from astropy.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Programme, ProgrammeMember, Target, TargetAlias, TargetMagnitude, User


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months, clamped to the month's last day (ESO release dates)."""
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def normalize_name(name: str) -> str:
    """Case-, space- and punctuation-insensitive form of a target name."""
    return re.sub(r"[\s_\-.]+", "", name).upper()


def find_target(session: Session, name: str) -> Target | None:
    """The target called ``name`` (or with that alias)."""
    alias = session.scalar(select(TargetAlias).where(TargetAlias.normalized == normalize_name(name)))
    return alias.target if alias else None


def ensure_target(session: Session, name: str, header: dict[str, Any] | None = None) -> Target:
    """Find a target by name/alias, or create it with the coordinates from a header summary."""
    target = find_target(session, name)
    if target is not None:
        if header and target.ra_deg is None and header.get("ra_deg") is not None:
            target.ra_deg, target.dec_deg = header.get("ra_deg"), header.get("dec_deg")
        return target
    header = header or {}
    target = Target(name=name, ra_deg=header.get("ra_deg"), dec_deg=header.get("dec_deg"))
    target.aliases.append(TargetAlias(alias=name, normalized=normalize_name(name)))
    session.add(target)
    session.flush()
    return target


def ensure_user(session: Session, username: str, full_name: str | None = None, is_staff: bool = False) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, full_name=full_name, is_staff=is_staff)
        session.add(user)
        session.flush()
    elif full_name and not user.full_name:
        user.full_name = full_name
    return user


def ensure_programme(session: Session, prog_id: str | None, pi_name: str | None = None) -> Programme | None:
    """Find or create a programme by its id (``None`` for frames without one)."""
    if not prog_id:
        return None
    programme = session.scalar(select(Programme).where(Programme.prog_id == prog_id))
    if programme is None:
        programme = Programme(prog_id=prog_id, pi_name=pi_name)
        session.add(programme)
        session.flush()
    elif pi_name and not programme.pi_name:
        programme.pi_name = pi_name
    return programme


def _cell(row: Any, name: str) -> Any:
    if name not in row.colnames:
        return None
    value = row[name]
    if hasattr(value, "mask") and bool(value.mask):
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def load_programme_table(session: Session, path: Path) -> int:
    """Load programmes, their PI and co-I users from an ECSV/CSV/VOTable table.

    Columns: ``prog_id`` (required), ``pi`` (username), ``pi_name`` (full
    name), ``co_is`` (comma-separated usernames), ``co_i_names``
    (semicolon-separated full names, same order), ``title``,
    ``proprietary_months``. Re-loading the same table changes nothing.

    Returns
    -------
    int
        Number of programmes in the table.
    """
    table = _read_table(path)
    if "prog_id" not in table.colnames:
        raise ValueError(f"{path}: programme table needs a 'prog_id' column (has {', '.join(table.colnames)})")
    for row in table:
        prog_id = _cell(row, "prog_id")
        pi_username = _cell(row, "pi")
        pi_name = _cell(row, "pi_name") or pi_username
        programme = ensure_programme(session, prog_id, pi_name)
        assert programme is not None
        for attr, value in (("title", _cell(row, "title")), ("pi_name", pi_name)):
            if value is not None and getattr(programme, attr) != value:
                setattr(programme, attr, value)
        months = _cell(row, "proprietary_months")
        if months is not None and programme.proprietary_months != int(months):
            programme.proprietary_months = int(months)
        members: dict[str, tuple[str, str | None]] = {}
        if pi_username:
            members[pi_username] = ("pi", pi_name)
        co_is = [u.strip() for u in (_cell(row, "co_is") or "").split(",") if u.strip()]
        names = [n.strip() for n in (_cell(row, "co_i_names") or "").split(";")]
        for index, username in enumerate(co_is):
            if username not in members:
                members[username] = ("coi", names[index] if index < len(names) and names[index] else None)
        current = {m.user.username: m for m in programme.members}
        for username, (role, full_name) in members.items():
            user = ensure_user(session, username, full_name)
            if username in current:
                if current[username].role != role:
                    current[username].role = role
            else:
                programme.members.append(ProgrammeMember(user=user, role=role))
    session.flush()
    return len(table)


_TARGET_COLUMNS = (
    "ra_deg",
    "dec_deg",
    "pm_ra_mas_yr",
    "pm_dec_mas_yr",
    "parallax_mas",
    "parallax_err_mas",
    "pm_ra_err_mas_yr",
    "pm_dec_err_mas_yr",
    "mass_msun",
    "spectral_type",
    "age_myr",
    "age_err_myr",
)


def load_target_table(session: Session, path: Path) -> int:
    """Load target properties, aliases (``aliases``: ``|``-separated) and
    magnitudes (columns ``mag_<band>`` with optional ``mag_<band>_err``)."""
    table = _read_table(path)
    if "name" not in table.colnames:
        raise ValueError(f"{path}: target table needs a 'name' column (has {', '.join(table.colnames)})")
    for row in table:
        target = ensure_target(session, _cell(row, "name"))
        for column in _TARGET_COLUMNS:
            value = _cell(row, column)
            if value is not None and getattr(target, column) != value:
                setattr(target, column, value)
        known = {a.normalized for a in target.aliases}
        for alias in (_cell(row, "aliases") or "").split("|"):
            alias = alias.strip()
            if alias and normalize_name(alias) not in known:
                clash = find_target(session, alias)
                if clash is not None and clash.id != target.id:
                    raise ValueError(f"{path}: alias {alias!r} of {target.name!r} already names {clash.name!r}")
                target.aliases.append(TargetAlias(alias=alias, normalized=normalize_name(alias)))
                known.add(normalize_name(alias))
        mags = {m.band: m for m in target.magnitudes}
        for column in table.colnames:
            if column.startswith("mag_") and not column.endswith("_err"):
                band = column[4:]
                value = _cell(row, column)
                if value is None:
                    continue
                error = _cell(row, f"{column}_err")
                if band in mags:
                    if mags[band].mag != value or mags[band].mag_err != error:
                        mags[band].mag, mags[band].mag_err = value, error
                else:
                    target.magnitudes.append(TargetMagnitude(band=band, mag=value, mag_err=error))
    session.flush()
    return len(table)


def _read_table(path: Path) -> Table:
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    fmt = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".xml": "votable", ".vot": "votable"}.get(path.suffix.lower())
    try:
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read table: {exc}") from exc
