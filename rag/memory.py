"""Handing freed heap memory back to the operating system (glibc's `malloc_trim`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Collect garbage, then return the heap's free pages to the OS; False where glibc is not the allocator.

    Why: glibc keeps freed blocks in its arenas (one per thread that allocated: torch's and ONNX
    Runtime's workers each have theirs), and the large numpy arrays a later step allocates come from
    fresh mappings that cannot reuse them, so without a trim the two steps' memory adds up in RSS.
    """
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
