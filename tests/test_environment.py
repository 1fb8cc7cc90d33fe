"""What the project's environment must (not) contain, whatever a machine had before."""

from __future__ import annotations


def test_sqlalchemy_runs_without_its_cython_extensions():
    """``make venv`` builds SQLAlchemy without its compiled modules (DISABLE_SQLALCHEMY_CEXT).

    With them, the test process (campaigns, PostgreSQL restarts, hub and kernels in one process)
    died now and then in the garbage collector, inside SQLAlchemy's code; without them it did
    not. A machine's earlier environment, or a wheel from a cache, must not bring them back.
    """
    from sqlalchemy.util import _has_cython

    compiled = [m.__name__ for m in _has_cython._all_cython_modules() if m._is_compiled()]
    assert not compiled, f"SQLAlchemy's compiled modules are installed: {compiled} (run make venv)"
