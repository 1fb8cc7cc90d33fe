"""Run the post-processing's linear algebra with single-threaded BLAS.

The matrices here are small (frames x pixels with tens of frames): a
multi-threaded OpenBLAS gains nothing on them, and on a machine whose cores are
shared with other jobs its threads wait for each other, which made a 61 x 10201
Gram matrix take 0.3 s instead of 1.5 ms (measured on the 2-core CI machine).
The public functions run under :func:`single_threaded_blas`, which uses
``threadpoolctl`` (in the environment through scikit-learn) and does nothing
when it is missing. Parallelism belongs one level up (one cube per worker).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Callable, TypeVar

try:  # pragma: no cover - depends on the environment
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover
    ThreadpoolController = None

F = TypeVar("F", bound=Callable)
_state = threading.local()
_controller = None


def _get_controller():
    global _controller
    if _controller is None and ThreadpoolController is not None:
        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread inside the block (re-entrant, cheap when nested)."""
    depth = getattr(_state, "depth", 0)
    controller = _get_controller() if depth == 0 else None
    limiter = controller.limit(limits=1, user_api="blas") if controller is not None else contextlib.nullcontext()
    _state.depth = depth + 1
    try:
        with limiter:
            yield
    finally:
        _state.depth = depth


def blas_single_thread(function: F) -> F:
    """Decorator form of :func:`single_threaded_blas`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
