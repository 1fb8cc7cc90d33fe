"""A count of the catalog's write transactions, kept by triggers on every table.

``catalog_state`` holds one row whose ``changes`` moves with every committed
transaction that inserts, updates or deletes a row of any other table,
whichever program wrote it. Readers that cache what they built from the catalog
(the dashboards' first paints) compare it to know whether the catalog changed.

* PostgreSQL: a deferred constraint trigger per table. It runs at commit, so the
  counter's row lock is taken last and held only for the commit (no deadlock with
  the writer's other locks, no writer waiting for a long transaction), and the count
  commits atomically with the data. Once per transaction (a transaction-local
  setting remembers it).
* SQLite: row triggers (SQLite has one writer at a time anyway).

A table added by a later revision must get the same trigger (:func:`watch`);
``tests/test_migrations.py`` checks that every table has it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF coalesce(current_setting('hcdc.change_noted', true), '') <> txid_current()::text THEN
        PERFORM set_config('hcdc.change_noted', txid_current()::text, true);
        UPDATE catalog_state SET changes = changes + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END $$
"""


def watch(table: str) -> None:
    """Add the change trigger to ``table`` (for this and later revisions)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f'CREATE CONSTRAINT TRIGGER hcdc_changed AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hcdc_note_change()"
        )
    else:
        for operation in OPERATIONS:
            op.execute(
                f'CREATE TRIGGER "hcdc_changed_{table}_{operation.lower()}" AFTER {operation} ON "{table}" '
                "BEGIN UPDATE catalog_state SET changes = changes + 1 WHERE id = 1; END"
            )


def unwatch(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'DROP TRIGGER IF EXISTS hcdc_changed ON "{table}"')
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_state")),
    )
    op.execute("INSERT INTO catalog_state (id, changes) VALUES (1, 0)")
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
