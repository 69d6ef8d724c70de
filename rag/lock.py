"""One writer per index: an advisory file lock under RAG_HOME, held for the whole of an ingest.

Chroma's embedded client is not process-safe and the chunk store, BM25 fields and manifest are replaced
as a set, so two writers would interleave and one run's documents would silently vanish. `flock` is
released by the kernel when the holder dies, so a killed ingest never leaves a stale lock behind.
Readers take no lock: every file is replaced atomically and the manifest last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from rag.errors import IndexBusy

LOCK_NAME = ".writer.lock"


@contextlib.contextmanager
def writer_lock(home: Path, wait_seconds: float = 1.0) -> Iterator[None]:
    """Hold the index's writer lock; raise IndexBusy if another writer keeps it past `wait_seconds`."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(detail=f"writer lock held: {home / LOCK_NAME}") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a human looking at the folder
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(home: Path) -> bool:
    """Whether some process holds the writer lock right now (for status displays)."""
    path = home / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
