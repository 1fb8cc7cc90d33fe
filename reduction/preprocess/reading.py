"""Reading an observation's raw files: ahead of their use, in background threads, bounded in memory.

A :class:`RawFrames` is one file's header, pixels (released once used) and hash; a file
that cannot be read gives the reason instead, which the caller reports.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..instruments import SphereIrdis
from ..rawio import RawFileError, RawHeader, read_raw_header_only, read_raw_image
from .model import PreprocessingError


@dataclass
class RawFrames:
    path: Path
    header: Any
    data: np.ndarray | None  # (n, y, x) float32; released once the frames are calibrated
    sha256: str
    n_frames: int


def read_raw(path: Path) -> RawFrames | str:
    """Read a raw file (one pass: hash, header, pixels); a broken file gives the reason instead."""
    try:
        image = read_raw_image(path)
    except (RawFileError, OSError, ValueError) as exc:
        return f"{Path(path).name}: unreadable, skipped ({exc})"
    data = image.data[None] if image.data.ndim == 2 else image.data
    if data.ndim != 3:
        return f"{Path(path).name}: unreadable, skipped (image of {data.ndim} axes, expected 2 or 3; keyword NAXIS)"
    return RawFrames(
        path=Path(path), header=image.header.header, data=data, sha256=image.header.sha256, n_frames=data.shape[0]
    )


#: Reader threads: reading, hashing and decoding release the GIL, so the files of an
#: observation are read ahead while the calibrations are computed.
READERS = 2


#: Files read ahead of their use at most: bounds the memory to a few files whatever the
#: length of the sequence (a file is up to NDIT full frames).
AHEAD = 4


class Reader:
    """Reads an observation's files ahead, in the order they will be needed, in background threads.

    At most ``ahead`` files are read and not yet used at any time; a file asked for
    out of order is queued at once, behind the reads already under way.
    """

    def __init__(self, paths: Sequence[Path], ahead: int = AHEAD):
        self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="hcdc-read")
        self._queue = list(dict.fromkeys(paths))
        self._futures: dict[Path, Any] = {}
        self._ahead = ahead
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._futures) < self._ahead:
            path = self._queue.pop(0)
            self._futures[path] = self._pool.submit(read_raw, path)

    def _take(self, path: Path) -> RawFrames | str:
        future = self._futures.pop(path, None)
        if future is None:
            if path in self._queue:
                self._queue.remove(path)
            future = self._pool.submit(read_raw, path)
        self._fill()
        return future.result()

    def read(self, paths: Sequence[Path], problems: list[str]) -> list[RawFrames]:
        """The files of ``paths`` (readable ones), the reasons for the others appended to ``problems``."""
        results = [self._take(p) for p in paths]
        problems.extend(r for r in results if isinstance(r, str))
        return [r for r in results if not isinstance(r, str)]

    def close(self) -> None:
        self._queue.clear()
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def read_all(paths: Sequence[Path], problems: list[str]) -> list[RawFrames]:
    reader = Reader(paths)
    try:
        return reader.read(paths, problems)
    finally:
        reader.close()


def matching_shape(
    raws: Sequence[RawFrames], shape: tuple[int, ...], what: str, problems: list[str]
) -> list[RawFrames]:
    """The raws whose frames have the science frames' shape; the others are reported, never dropped silently."""
    problems.extend(
        f"{r.path.name}: {what} frame shape {r.data.shape[1:]} differs from the science frames' "
        f"{tuple(shape)}, not used"
        for r in raws
        if r.data.shape[1:] != shape
    )
    return [r for r in raws if r.data.shape[1:] == shape]


def release(raws: Sequence[RawFrames]) -> None:
    """Drop the pixels of raws already used (their path and hash stay for the provenance)."""
    for raw in raws:
        raw.data = None


def stack_frames(raws: Sequence[RawFrames]) -> np.ndarray:
    return np.concatenate([r.data for r in raws], axis=0)


def dit_of(raw: RawFrames) -> float:
    return float(SphereIrdis._value(raw.header, "dit", str(raw.path), required=True))


def date_of(raw: RawFrames) -> str | None:
    value = raw.header.get("DATE-OBS")
    return None if value is None else str(value)


def science_headers(paths: Sequence[Path], problems: list[str]) -> list[RawHeader]:
    """The science files' headers in time order, checked (pixels are read later, one file at a time)."""
    heads, dates = [], {}
    for path in paths:
        try:
            head = read_raw_header_only(path)
            dates[head.path] = SphereIrdis.parse_date(head.header, str(path))
            SphereIrdis._value(head.header, "dit", str(path), required=True)
        except (RawFileError, OSError, ValueError, KeyError) as exc:
            problems.append(f"{Path(path).name}: unreadable, skipped ({exc})")
            continue
        if len(head.shape) not in (2, 3):
            problems.append(
                f"{Path(path).name}: unreadable, skipped (image of {len(head.shape)} axes, "
                "expected 2 or 3; keyword NAXIS)"
            )
            continue
        heads.append(head)
    if not heads:
        raise PreprocessingError("no readable OBJECT (science) file")
    shape = heads[0].shape[-2:]
    for head in heads:
        if head.shape[-2:] != shape:
            problems.append(f"{Path(head.path).name}: frame shape {head.shape[-2:]} differs from {shape}, skipped")
    heads = [h for h in heads if h.shape[-2:] == shape]
    return sorted(heads, key=lambda h: dates[h.path])
