"""Load ``.npy`` ground-truth files without trusting pickles.

VPR-Bench and OpenVPRLab ship ground truth as *object* arrays (ragged index lists),
which ``np.load`` can only read with ``allow_pickle=True`` — i.e. by executing whatever
the file says. Datasets come from the internet, so here the pickle is unpickled with an
allow-list of the few numpy constructors an object array of numbers needs; anything
else is refused with the file named.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

_ALLOWED = {
    (mod, name)
    for core in ("numpy.core", "numpy._core")
    for mod, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class UnsafeNpyError(ValueError):
    """The pickle inside a ``.npy`` file asks for something other than numpy arrays/numbers."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, path: Path) -> None:
        # latin1 so arrays pickled by Python 2 (older VPR-Bench files) decode their raw bytes.
        super().__init__(fh, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafeNpyError(f"{self._path}: refusing to unpickle {module}.{name} (only numpy arrays are allowed)")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` file; object arrays are unpickled through a numpy-only allow-list."""
    p = Path(path)
    with open(p, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # (3, 0): utf8 field names; no public reader, numpy's private one is stable
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)  # type: ignore[attr-defined]
        except ValueError as e:
            raise ValueError(f"{p} is not a valid .npy file: {e}") from e
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        try:
            arr = _NumpyOnlyUnpickler(f, p).load()
        except UnsafeNpyError:
            raise
        except Exception as e:  # truncated or garbled pickle
            raise ValueError(f"{p}: cannot decode object array: {type(e).__name__}: {e}") from e
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{p}: expected an array, found {type(arr).__name__}")
    return arr
