"""MNIST-format IDX files: ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, gzipped or not.

The format of MNIST, Fashion-MNIST and EMNIST: a big-endian header (two zero
bytes, a type code, the number of dimensions, then each dimension's size as a
4-byte int) followed by the values.  Images become rows of pixels scaled to
[0, 1], as the FedAvg paper's 2NN takes them; the labels file is found next
to the images file by name (``images-idx3`` -> ``labels-idx1``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mpifl.errors import DataError

TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def is_idx(path: Path) -> bool:
    name = path.name.lower()
    return "-idx" in name and "-ubyte" in name


def read_array(path: Path) -> np.ndarray:
    """The array an IDX file holds, in its own type and shape."""
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} cannot be read as a (gzipped) IDX file: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in TYPES:
        raise DataError(f"{path} is not an IDX file: its first bytes are {raw[:4].hex()}, not 0000 and a type code "
                        f"({', '.join(f'{t:02x}' for t in TYPES)}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path} has a truncated IDX header ({ndim} dimensions).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path} should hold {expected} bytes of values for shape {shape} after its header; "
                        f"it holds {len(raw) - header}.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def labels_beside(images: Path) -> Path:
    """The labels file that goes with an images file: same directory, 'images-idx3' -> 'labels-idx1'."""
    name = images.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    if name == images.name:
        raise DataError(f"{images} is not named like an IDX images file (…-images-idx3-ubyte), so its labels "
                        "file cannot be found beside it.")
    candidates = [images.with_name(name)]
    if name.endswith(".gz"):
        candidates.append(images.with_name(name[:-3]))
    else:
        candidates.append(images.with_name(name + ".gz"))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise DataError(f"No labels file for {images}: looked for {' and '.join(str(c) for c in candidates)}.")


def read_images_and_labels(images: Path) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): one row of pixels in [0, 1] per image (float64), and the labels as floats."""
    pixels = read_array(images)
    if pixels.ndim < 2:
        raise DataError(f"{images} holds a {pixels.ndim}-dimensional array; an images file has one image per row "
                        "of its first dimension.")
    labels_path = labels_beside(images)
    labels = read_array(labels_path)
    if labels.ndim != 1 or labels.shape[0] != pixels.shape[0]:
        raise DataError(f"{labels_path} holds labels of shape {labels.shape}; {images} holds {pixels.shape[0]} "
                        "images, so one label each is needed.")
    X = pixels.reshape(pixels.shape[0], -1).astype(np.float64)
    if pixels.dtype == np.uint8:
        X /= 255.0
    return X, labels.astype(np.float64)
