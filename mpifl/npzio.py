"""Deterministic, atomic .npz files: same arrays, same bytes; never a half-written file."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from mpifl.errors import MpiflError

_EPOCH = (1980, 1, 1, 0, 0, 0)  # np.savez stamps the current time, which breaks bitwise checks


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays with fixed zip timestamps to a temporary name, fsync, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.asarray(array, order="C"), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH), payload.getvalue())
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array in path, never unpickling; a clear error names an unreadable file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MpiflError(f"Cannot read {path}: {exc}.") from None
