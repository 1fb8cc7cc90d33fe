"""A saved interactive reduction's key: a save repeated after a lost answer is recorded once.

A PI's kernel sends ``save_key`` (a random token made when the run finished) with a save. When the
catalog service restarts while a save is under way, the kernel cannot know whether the transaction
committed; it sends the same save again, and the service answers with the reduction already recorded
under that key (``already_saved``) instead of recording it twice. Unique per owner: two PIs' keys never
meet.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("save_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_reductions_owner_save_key", ["owner_id", "save_key"])


def downgrade() -> None:
    with op.batch_alter_table("reductions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reductions_owner_save_key", type_="unique")
        batch_op.drop_column("save_key")
