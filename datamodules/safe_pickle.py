"""Read pickled data files (the CIFAR batches) without letting them run code.

A pickle names the functions that rebuild its objects, so an ordinary ``pickle.load`` of a
crafted file runs whatever it names. Data files only need numpy arrays inside dicts and lists
of plain values, so only the few numpy functions that rebuild an array are admitted.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

# (module, name) pairs a pickled numpy array refers to; numpy 2 writes ``numpy._core``.
_ALLOWED = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes written by Python 3
    }
)


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a data file has no use for "
                "(refused: only numpy arrays, lists, dicts and plain values are read)"
            )
        return super().find_class(module, name)


def load_data_pickle(path: str | Path) -> Any:
    """Unpickle a data file that may only hold numpy arrays, lists, dicts and plain values.

    Raises ``pickle.UnpicklingError`` (naming the file) for anything else.
    """
    with open(path, "rb") as file:
        try:
            return _DataUnpickler(file, encoding="latin1").load()
        except pickle.UnpicklingError as err:
            raise pickle.UnpicklingError(f"{path}: {err}") from None
