"""The access rule of HC-DC, written once.

A row is visible to a user when

* it is released (``release_date`` set and ``release_date <= today``), or
* the user is PI or co-I of the row's programme, or
* the user is staff.

A row's programme is its observation's programme (raw files without an
observation fall back to their ``OBS PROG ID``); rows without a release date
are never public (conservative: only members and staff see them).

Derived rows (reductions, products, detections, detection limits) carry the
*latest* release date of their inputs (:func:`derived_release_date`), so a
product made from one proprietary frame stays proprietary as long as that frame.

Three things use this module and only this module:

* :func:`visible` — the rule on plain values, for one row in Python;
* :func:`visibility_filter` / :func:`visible_query` — the same rule as a SQL
  ``WHERE`` clause on every backend (what the catalog service runs);
* migration ``0003`` — the same rule as PostgreSQL row-level-security policies
  (``hcdc_row_visible``), applied when the service queries as role
  :data:`READER_ROLE`; ``tests/test_access_rules.py`` asserts that the three
  agree row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable

from sqlalchemy import and_, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from hcdc.catalog.models import (
    Detection,
    DetectionLimit,
    Observation,
    Product,
    Programme,
    ProgrammeMember,
    RawFile,
    Reduction,
    User,
)

#: PostgreSQL role (NOLOGIN) the catalog service switches to for every user query;
#: the row-level-security policies of migration 0003 apply to it.
READER_ROLE = "hcdc_reader"
#: Transaction-local PostgreSQL setting naming the user the policies check.
USER_SETTING = "hcdc.user"

#: Models that carry a release date and are filtered by the rule.
PROTECTED_MODELS = (Observation, RawFile, Reduction, Product, Detection, DetectionLimit)


class AccessDenied(PermissionError):
    """The row exists but the user may not see it (yet)."""


@dataclass(frozen=True)
class Principal:
    """Who asks: a user name, whether staff, and the programmes they are PI/co-I of."""

    username: str
    is_staff: bool = False
    programme_ids: frozenset[int] = field(default_factory=frozenset)
    #: False when the name is unknown to the catalog (sees public data only).
    known: bool = True

    @property
    def anonymous(self) -> bool:
        return not self.username


def principal_for(session: Session, username: str | None) -> Principal:
    """The :class:`Principal` of ``username`` as the catalog knows it.

    Unknown names get no rights beyond public data (``known=False``).
    """
    if not username:
        return Principal(username="", known=False)
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        return Principal(username=username, known=False)
    ids = frozenset(session.scalars(select(ProgrammeMember.programme_id).where(ProgrammeMember.user_id == user.id)))
    return Principal(username=username, is_staff=bool(user.is_staff), programme_ids=ids)


def is_released(release_date: date | None, today: date | None = None) -> bool:
    """Whether a row with ``release_date`` is public on ``today`` (None: never)."""
    today = today or date.today()
    return release_date is not None and release_date <= today


def visible(
    principal: Principal, release_date: date | None, programme_id: int | None, today: date | None = None
) -> bool:
    """THE access rule on plain values (see the module docstring)."""
    if principal.is_staff:
        return True
    if is_released(release_date, today):
        return True
    return programme_id is not None and programme_id in principal.programme_ids


def programme_of(session: Session, row: Any) -> int | None:
    """The programme id a protected row belongs to (None: no programme)."""
    if isinstance(row, Observation):
        return row.programme_id
    observation_id = getattr(row, "observation_id", None)
    if observation_id is not None:
        return session.scalar(select(Observation.programme_id).where(Observation.id == observation_id))
    if isinstance(row, RawFile) and row.programme:
        return session.scalar(select(Programme.id).where(Programme.prog_id == row.programme))
    if isinstance(row, DetectionLimit | Detection | Product):
        reduction = session.get(Reduction, row.reduction_id)
        if reduction is not None and reduction.observation_id is not None:
            return session.scalar(select(Observation.programme_id).where(Observation.id == reduction.observation_id))
    return None


def row_visible(session: Session, principal: Principal, row: Any, today: date | None = None) -> bool:
    """:func:`visible` for one ORM row of :data:`PROTECTED_MODELS`."""
    return visible(principal, row.release_date, programme_of(session, row), today)


# --- the same rule in SQL ----------------------------------------------------------------


def _released(column, today: date) -> ColumnElement[bool]:
    return and_(column.is_not(None), column <= today)


def _member_observations(principal: Principal) -> Select:
    return select(Observation.id).where(Observation.programme_id.in_(sorted(principal.programme_ids)))


def visibility_filter(model: type, principal: Principal, today: date | None = None) -> ColumnElement[bool]:
    """A ``WHERE`` clause selecting the rows of ``model`` that ``principal`` may see."""
    if model not in PROTECTED_MODELS:
        raise TypeError(f"{model.__name__} carries no release date; the access rule does not apply")
    today = today or date.today()
    if principal.is_staff:
        return true()
    released = _released(model.release_date, today)
    if not principal.programme_ids:
        return released
    ids = sorted(principal.programme_ids)
    if model is Observation:
        member = Observation.programme_id.in_(ids)
    elif model is RawFile:
        member = or_(
            RawFile.observation_id.in_(_member_observations(principal)),
            and_(
                RawFile.observation_id.is_(None),
                RawFile.programme.in_(select(Programme.prog_id).where(Programme.id.in_(ids))),
            ),
        )
    elif model is Reduction:
        member = Reduction.observation_id.in_(_member_observations(principal))
    else:  # products, detections, limits: their observation, else their reduction's
        via_reduction = model.reduction_id.in_(
            select(Reduction.id).where(Reduction.observation_id.in_(_member_observations(principal)))
        )
        member = or_(
            model.observation_id.in_(_member_observations(principal)),
            and_(model.observation_id.is_(None), via_reduction),
        )
    return or_(released, member)


def visible_query(model: type, principal: Principal, today: date | None = None) -> Select:
    """``select(model)`` restricted to what ``principal`` may see."""
    return select(model).where(visibility_filter(model, principal, today))


def visible_observations(session: Session, principal: Principal, today: date | None = None) -> list[Observation]:
    """The observations ``principal`` may see, by night then key."""
    query = visible_query(Observation, principal, today).order_by(Observation.night, Observation.key)
    return list(session.scalars(query))


# --- derived rows ------------------------------------------------------------------------


def derived_release_date(dates: Iterable[date | None]) -> date | None:
    """Release date of a row derived from inputs with ``dates``: the latest one.

    An input without a release date (never public) makes the result None too;
    no input at all is an error (a derived row always has inputs).
    """
    values = list(dates)
    if not values:
        raise ValueError("a derived row needs at least one input to inherit a release date from")
    if any(value is None for value in values):
        return None
    return max(values)


def release_date_of_inputs(
    session: Session,
    *,
    observation_ids: Iterable[int] = (),
    raw_file_ids: Iterable[int] = (),
    product_ids: Iterable[int] = (),
    reduction_ids: Iterable[int] = (),
) -> date | None:
    """:func:`derived_release_date` of catalog rows given by id (all must exist)."""
    dates: list[date | None] = []
    for model, ids in (
        (Observation, observation_ids),
        (RawFile, raw_file_ids),
        (Product, product_ids),
        (Reduction, reduction_ids),
    ):
        wanted = set(ids)
        if not wanted:
            continue
        found = dict(session.execute(select(model.id, model.release_date).where(model.id.in_(sorted(wanted)))).all())
        missing = wanted - set(found)
        if missing:
            raise LookupError(f"no {model.__tablename__} with id {sorted(missing)}")
        dates.extend(found.values())
    return derived_release_date(dates)
