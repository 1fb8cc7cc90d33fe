"""Where a reduction's files live — its products, executed notebook, HTML report and log — said once.

Products go to ``<data dir>/products/obsNNNNNN/<step>-r<reduction id>/`` (:func:`product_folder`;
a registered external cube's copies to ``products/external/obsNNNNNN/``). The pipeline writes
the notebook, report and log under ``<data dir>/reports/<campaignNNNN|manual>/obsNNNNNN/``
as ``<step>-r<reduction id>.ipynb|.html|.log``. Every path is derived from the
server's data directory and the reduction row (campaign, observation, step, id):
nothing a client sends can name a file. :func:`open_reduction_file` is the only
way the services read one: it refuses a stored path that is not the one derived
here, any symbolic link on the way, and anything but a regular file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

#: kind -> file suffix of a reduction's files
REPORT_FILES = {"notebook": ".ipynb", "report": ".html", "log": ".log"}
#: kind -> the reductions column that records it
REPORT_COLUMNS = {"notebook": "notebook_path", "report": "report_path", "log": "log_path"}


class ReportUnavailable(LookupError):
    """A reduction file that cannot be served, with a sentence for a person (no path in it)."""


def product_folder(data_dir: str | Path, observation_id: int, step: str, reduction_id: int) -> Path:
    """The folder of the products of one reduction (``step``: its step, or ``interactive`` for a PI's)."""
    return Path(data_dir) / "products" / f"obs{observation_id:06d}" / f"{step}-r{reduction_id}"


def external_folder(data_dir: str | Path, observation_id: int) -> Path:
    """The folder of a registered external cube's copies (cube, angles, PSF)."""
    return Path(data_dir) / "products" / "external" / f"obs{observation_id:06d}"


def reports_folder(data_dir: str | Path, campaign_id: int | None, observation_id: int) -> Path:
    """The folder of one observation's step reports in a campaign (``None``: manual re-runs)."""
    where = "manual" if campaign_id is None else f"campaign{campaign_id:04d}"
    return Path(data_dir) / "reports" / where / f"obs{observation_id:06d}"


def reduction_file(data_dir: str | Path, reduction: Any, kind: str) -> Path:
    """Where the ``kind`` file (notebook, report, log) of ``reduction`` belongs."""
    if reduction.observation_id is None:
        raise ReportUnavailable(f"reduction {reduction.id} belongs to no observation and has no {kind}")
    folder = reports_folder(data_dir, reduction.campaign_id, reduction.observation_id)
    return folder / f"{reduction.step}-r{reduction.id}{REPORT_FILES[kind]}"


def open_reduction_file(data_dir: str | Path, reduction: Any, kind: str) -> tuple[Path, bytes]:
    """(path, content) of a reduction's ``kind`` file, after the checks of the module docstring.

    Raises
    ------
    ReportUnavailable
        Nothing recorded, a recorded path other than the derived one, a symbolic link, a missing or
        non-regular file. The message names the reduction, never a path.
    """
    recorded = getattr(reduction, REPORT_COLUMNS[kind])
    label = f"{reduction.step} (reduction {reduction.id})"
    if not recorded:
        raise ReportUnavailable(f"no {kind} was recorded for {label}")
    root = Path(os.path.realpath(data_dir))
    expected = reduction_file(root, reduction, kind)
    # the pipeline records the path under the data dir as it was configured (which may go through a link)
    where_written = {expected, reduction_file(os.path.abspath(data_dir), reduction, kind)}
    if Path(os.path.abspath(recorded)) not in where_written:
        raise ReportUnavailable(
            f"the {kind} recorded for {label} is not where the pipeline writes it; "
            f"it is not served (tell the data-center staff)"
        )
    # no symbolic link from the data directory down, and the file opened without following one
    current = root
    for part in expected.relative_to(root).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise ReportUnavailable(
                f"the {kind} of {label} is recorded but its file is missing (moved or cleaned up?)"
            ) from None
        if stat.S_ISLNK(mode):
            raise ReportUnavailable(
                f"the {kind} of {label} is not a plain file in the reports folder; "
                f"it is not served (tell the data-center staff)"
            )
    try:
        fd = os.open(expected, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0))
    except OSError:
        raise ReportUnavailable(f"the {kind} of {label} cannot be opened") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ReportUnavailable(f"the {kind} of {label} is not a regular file; it is not served")
        return expected, handle.read()
