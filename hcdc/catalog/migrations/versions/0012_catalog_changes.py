"""A count of the catalog's write transactions, kept by triggers on every table.

``catalog_state`` holds one row whose ``changes`` moves with every committed
transaction that inserts, updates, deletes or truncates rows of any other table,
whichever program wrote it, and whose ``token`` is drawn afresh each time (so
that a count seen before a restore or a downgrade never vouches for other data
after it). Readers that cache what they built from the catalog (the dashboards'
first paints) compare both to know whether the catalog changed.

* PostgreSQL: a deferred constraint trigger per table. It runs at commit, so the
  counter's row lock is taken last and held only for the commit (no deadlock with
  the writer's other locks, no writer waiting for a long transaction), and the count
  commits atomically with the data. Once per transaction (a transaction-local
  setting remembers it).
  A statement trigger does the same on TRUNCATE. Migrations run with the constraints
  immediate (``migrations/env.py``), so that a revision may write rows and then alter
  their table.
* SQLite: row triggers (SQLite has one writer at a time anyway).

A table added by a later revision must get the same trigger (:func:`watch`), and on
SQLite a ``batch_alter_table`` re-creates its table without them: call :func:`watch`
again after it. ``tests/test_migrations.py`` checks that every table has them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: tables without the trigger: Alembic's own and the counter itself
UNWATCHED = ("alembic_version", "catalog_state")
OPERATIONS = ("INSERT", "UPDATE", "DELETE")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION hcdc_note_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(current_setting('hcdc.change_noted', true), '') <> txid_current()::text THEN
        PERFORM set_config('hcdc.change_noted', txid_current()::text, true);
        UPDATE public.catalog_state
           SET changes = changes + 1, token = md5(random()::text || clock_timestamp()::text)
         WHERE id = 1;
    END IF;
    RETURN NULL;
END $$
"""
SQLITE_BUMP = "UPDATE catalog_state SET changes = changes + 1, token = lower(hex(randomblob(16))) WHERE id = 1"


def watch(table: str) -> None:
    """Add the change trigger to ``table`` (for this and later revisions)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f'CREATE CONSTRAINT TRIGGER hcdc_changed AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hcdc_note_change()"
        )
        op.execute(
            f'CREATE TRIGGER hcdc_changed_truncate AFTER TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION hcdc_note_change()"
        )
    else:
        for operation in OPERATIONS:
            op.execute(
                f'CREATE TRIGGER "hcdc_changed_{table}_{operation.lower()}" AFTER {operation} ON "{table}" '
                f"BEGIN {SQLITE_BUMP}; END"
            )


def unwatch(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'DROP TRIGGER IF EXISTS hcdc_changed ON "{table}"')
        op.execute(f'DROP TRIGGER IF EXISTS hcdc_changed_truncate ON "{table}"')
    else:
        for operation in OPERATIONS:
            op.execute(f'DROP TRIGGER IF EXISTS "hcdc_changed_{table}_{operation.lower()}"')


def _tables() -> list[str]:
    return sorted(t for t in sa.inspect(op.get_bind()).get_table_names() if t not in UNWATCHED)


def upgrade() -> None:
    op.create_table(
        "catalog_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("token", sa.String(32), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_state")),
    )
    op.execute(
        sa.text("INSERT INTO catalog_state (id, changes, token) VALUES (1, 0, :token)").bindparams(
            token=secrets.token_hex(16)
        )
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
    for table in _tables():
        watch(table)


def downgrade() -> None:
    for table in _tables():
        unwatch(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS hcdc_note_change()")
    op.drop_table("catalog_state")
