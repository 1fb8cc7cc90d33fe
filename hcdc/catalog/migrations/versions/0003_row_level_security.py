"""Row-level security: the access rule of hcdc.access as PostgreSQL policies (no-op on SQLite).

The catalog service runs every user query as ``SET LOCAL ROLE hcdc_reader`` with
``set_config('hcdc.user', <name>, true)``; the policies below then let through
only the rows ``hcdc.access.visible`` allows, whatever SQL the service runs.
The table owner (ingest, pipeline) is not restricted (RLS is enabled, not
forced): writes stay with the owner, reads on behalf of a user go through the
reader role. Any other role gets no row at all (no policy = deny).

``hcdc_reader`` is a cluster-wide NOLOGIN role; downgrading removes its grants
and the policies but keeps the role (other catalogs of the cluster may use it).
A later revision that adds a protected table must add its policy and grant here too.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLE = "hcdc_reader"

#: Programme of each protected table's rows (SQL over the row's columns).
#: Sub-selects on other protected tables are themselves filtered for the reader,
#: which never changes the outcome: a member sees the rows they look up.
_OBS_PROGRAMME = "(SELECT o.programme_id FROM observations o WHERE o.id = {table}.observation_id)"
_REDUCTION_PROGRAMME = (
    "(SELECT o.programme_id FROM reductions r JOIN observations o ON o.id = r.observation_id "
    "WHERE r.id = {table}.reduction_id)"
)
PROGRAMME_OF = {
    "observations": "observations.programme_id",
    "raw_files": (
        "CASE WHEN raw_files.observation_id IS NOT NULL THEN "
        + _OBS_PROGRAMME.format(table="raw_files")
        + " ELSE (SELECT p.id FROM programmes p WHERE p.prog_id = raw_files.programme) END"
    ),
    "reductions": _OBS_PROGRAMME.format(table="reductions"),
    "products": None,
    "detections": None,
    "detection_limits": None,
}
for _table in ("products", "detections", "detection_limits"):
    PROGRAMME_OF[_table] = (
        f"CASE WHEN {_table}.observation_id IS NOT NULL THEN "
        + _OBS_PROGRAMME.format(table=_table)
        + " ELSE "
        + _REDUCTION_PROGRAMME.format(table=_table)
        + " END"
    )

#: Tables whose rows follow a parent row's visibility.
CHILDREN = {
    "detection_limit_points": "EXISTS (SELECT 1 FROM detection_limits l WHERE l.id = detection_limit_points.limit_id)",
    "observation_calibrations": "EXISTS (SELECT 1 FROM observations o WHERE o.id = observation_calibrations.observation_id)",
}

VISIBLE_FUNCTION = """
CREATE OR REPLACE FUNCTION hcdc_row_visible(integer, date) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT ($2 IS NOT NULL AND $2 <= current_date)
      OR EXISTS (SELECT 1 FROM users u
                  WHERE u.username = current_setting('hcdc.user', true)
                    AND (u.is_staff
                         OR ($1 IS NOT NULL AND EXISTS (SELECT 1 FROM programme_members m
                                                         WHERE m.user_id = u.id AND m.programme_id = $1))))
$$
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgres():
        return  # SQLite has no roles: the service's SQL filter (hcdc.access) is the only layer there
    op.execute(f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
    CREATE ROLE {ROLE} NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$""")
    op.execute(f"""
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'GRANT {ROLE} TO ' || quote_ident(current_user);
  END IF;
END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ROLE}")
    op.execute(VISIBLE_FUNCTION)
    for table, programme in PROGRAMME_OF.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY hcdc_read ON {table} FOR SELECT TO {ROLE} "
            f"USING (hcdc_row_visible({programme}, {table}.release_date))"
        )
    for table, condition in CHILDREN.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY hcdc_read ON {table} FOR SELECT TO {ROLE} USING ({condition})")


def downgrade() -> None:
    if not _postgres():
        return
    for table in [*PROGRAMME_OF, *CHILDREN]:
        op.execute(f"DROP POLICY IF EXISTS hcdc_read ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS hcdc_row_visible(integer, date)")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
