"""The HC-DC catalog: schema (``models``), database handle (``db``), queries."""

from .db import Catalog, downgrade, upgrade

__all__ = ["Catalog", "downgrade", "upgrade"]
