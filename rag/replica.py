"""Several instances, one store: mirror an index kept on a `chroma run` server into this instance's RAG_HOME.

With RAG_CHROMA_HOST set, Chroma holds everything another instance needs — each chunk's vector, text,
metadata and entities, plus the manifest (documents, hashes, chunk ids) published under a generation id
in the `<collection>_state` collection. An instance whose local generation differs fetches only the
chunks of documents that changed and rebuilds its local cache (chunk store, both BM25 fields, entities,
vectors) through the same `Index._write` an ingest uses. No folder is shared between instances.

Writers on different hosts cannot share a file lock, so server mode adds a lease record in the state
collection: a writer that finds another's unexpired lease gives up with IndexBusy. Chroma has no
compare-and-set, so the lease is checked again after writing it — a narrow race remains if two writers
start within the same fraction of a second; the file lock still makes writers on one host exclusive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from rag.config import Settings
from rag.embed import Embedder
from rag.entities import Entities
from rag.errors import IndexBusy
from rag.index import Index, read_generation, read_state, state_collection
from rag.types import Chunk

log = logging.getLogger(__name__)

LEASE_ID = "writer-lease"
LEASE_SECONDS = 600.0
_PAGE = 500


def remote_generation(settings: Settings) -> str:
    """The generation published on the server ("" when nothing was ingested there yet)."""
    return read_generation(settings)


def mirror(settings: Settings, embedder: Embedder) -> bool:
    """Bring the local cache in line with the server; True if anything changed locally."""
    manifest = read_state(settings)
    if manifest is None:
        return False
    index = Index.open(settings, must_exist=False)
    if index.manifest.get("generation") == manifest.get("generation"):
        return False
    local_docs: dict[str, Any] = index.manifest.get("docs", {})
    remote_docs: dict[str, Any] = manifest.get("docs", {})
    same_model = index.embedding_model == manifest.get("embedding_model")
    changed = [d for d, info in remote_docs.items()
               if not same_model or d not in local_docs or local_docs[d].get("hash") != info.get("hash")]
    wanted = [cid for d in changed for cid in remote_docs[d].get("chunk_ids", [])]
    fetched = _fetch(index, wanted)
    chunks_now: dict[str, Chunk] = {}
    for info in remote_docs.values():
        for cid in info.get("chunk_ids", []):
            chunk = fetched.get(cid) or index.chunks.get(cid)
            if chunk is not None:
                chunks_now[cid] = chunk
    missing = len(wanted) - len(fetched)
    if missing:
        log.warning("%d chunks listed in the published manifest are not on the server yet.", missing)
    if not same_model and index.chunks:
        index.vectors = np.zeros((0, 0), np.float32)  # never mix vectors of two models
    index._write(chunks_now, remote_docs, embedder, generation=str(manifest["generation"]))
    log.info("Mirrored the server's index: %d documents changed, %d chunks in all.", len(changed), len(chunks_now))
    return True


def _fetch(index: Index, ids: list[str]) -> dict[str, Chunk]:
    """Chunks (with vectors and entities staged on `index`) for `ids`, read from the server in pages."""
    col = index.collection()
    out: dict[str, Chunk] = {}
    for i in range(0, len(ids), _PAGE):
        got = col.get(ids=ids[i : i + _PAGE], include=["documents", "metadatas", "embeddings"])
        for cid, text, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"],
                                        strict=True):
            if text is None:
                continue  # written by a version that did not store chunk text; a re-ingest there fixes it
            chunk = Chunk(
                chunk_id=cid, doc_id=str(meta["doc_id"]), position=int(meta["position"]), text=text,
                char_start=int(meta["char_start"]), char_end=int(meta["char_end"]), title=str(meta.get("title", "")),
                source=str(meta.get("source", "")), date=str(meta.get("date", "")),
                language=str(meta.get("language", "vi")), url=str(meta.get("url", "")),
            )
            out[cid] = chunk
            index._new_vectors[cid] = np.asarray(emb, dtype=np.float32)
            index._new_entities[cid] = (_key(chunk), Entities.from_metadata(meta))
    return out


def _key(chunk: Chunk) -> str:
    from rag.index import _text_key

    return _text_key(chunk)


@contextlib.contextmanager
def server_lease(settings: Settings) -> Iterator[None]:
    """Hold the server-wide writer lease for the duration of a write (see the module docstring)."""
    col = state_collection(settings)
    me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    now = time.time()
    got = col.get(ids=[LEASE_ID], include=["metadatas"])
    metas = got.get("metadatas") or []
    if metas and metas[0].get("holder") != me and float(metas[0].get("expires", 0)) > now:
        raise IndexBusy(detail=f"server lease held by {metas[0].get('holder')}")
    col.upsert(ids=[LEASE_ID], documents=[me], embeddings=[[0.0]],
               metadatas=[{"holder": me, "expires": now + LEASE_SECONDS}])
    time.sleep(0.2)  # let a concurrent claimant's write land, then see who holds it
    check = col.get(ids=[LEASE_ID], include=["metadatas"]).get("metadatas") or []
    if not check or check[0].get("holder") != me:
        raise IndexBusy(detail="server lease taken by another writer")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # an expired lease is harmless; the next writer takes it
            col.delete(ids=[LEASE_ID])
