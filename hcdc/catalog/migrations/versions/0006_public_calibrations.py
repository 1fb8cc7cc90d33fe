"""Reduced calibrations are public at once, as raw calibrations are.

Before this revision the products of reduced calibrations (master darks, flats,
skies, IFS spectra positions and wavelength solutions) were written without a
release date, and the access rule treats a missing date as "never public": a PI
asking for the calibrations of a reduction got 403. New ones carry the date
their frames were taken; this revision gives existing ones the same date (the
calibration's ``date_obs``, else its creation date). Nothing in the schema
changes; the downgrade leaves the dates (they are true).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _day(value) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def upgrade() -> None:
    calibrations = sa.table(
        "calibrations",
        sa.column("product_id", sa.Integer),
        sa.column("date_obs", sa.DateTime),
        sa.column("created_at", sa.DateTime),
    )
    products = sa.table("products", sa.column("id", sa.Integer), sa.column("release_date", sa.Date))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(calibrations.c.product_id, calibrations.c.date_obs, calibrations.c.created_at)
        .select_from(calibrations.join(products, products.c.id == calibrations.c.product_id))
        .where(products.c.release_date.is_(None))
    ).all()
    for product_id, date_obs, created_at in rows:
        released = _day(date_obs) or _day(created_at) or date.today()
        bind.execute(products.update().where(products.c.id == product_id).values(release_date=released))


def downgrade() -> None:
    pass
