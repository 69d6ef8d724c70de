"""Index invariant check (`rag check`): every store under RAG_HOME describes the same chunks.

Checked, in the spirit of Chroma's own persistence tests (write, kill, reopen, check invariants):
- manifest.json parses; every chunk id appears under exactly one document; no two documents share a path;
- chunks.jsonl has unique ids, each of a document in the manifest, and exactly the manifest's chunk ids;
- both BM25 fields (bm25/accented, bm25/plain) list the chunk store's ids, in its order;
- tokens.jsonl and entities.jsonl cover exactly the chunk ids; vectors.npy has one row per chunk with
  the manifest's dimension;
- Chroma holds exactly the chunk ids (same set, same count).

Each `Problem` says what is wrong and how to repair it. Almost everything is repaired by running
`rag ingest` again (it redoes interrupted documents, rewrites the files and sweeps Chroma); a manifest
that cannot be read needs the index folder rebuilt.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings

REINGEST_EN = "run `rag ingest` again: it redoes interrupted documents, rewrites the files and sweeps Chroma"
REINGEST_VI = "chạy lại `rag ingest`: lệnh này làm lại tài liệu bị gián đoạn, ghi lại các tệp và dọn Chroma"
REBUILD_EN = "move RAG_HOME aside and run `rag ingest` to rebuild the index from the documents"
REBUILD_VI = "đổi tên thư mục RAG_HOME rồi chạy `rag ingest` để tạo lại chỉ mục từ tài liệu"


@dataclass(frozen=True)
class Problem:
    """One broken invariant: what is wrong (en/vi) and how to repair it (en/vi)."""

    what_en: str
    what_vi: str
    repair_en: str = REINGEST_EN
    repair_vi: str = REINGEST_VI

    def message(self, lang: str = "en") -> str:
        """'<what>; to repair, <how>.' in the user's language."""
        if lang == "vi":
            return f"{self.what_vi}; cách sửa: {self.repair_vi}."
        return f"{self.what_en}; to repair, {self.repair_en}."


def _jsonl_ids(path: Path, key: str = "chunk_id") -> list[str] | None:
    if not path.exists():
        return None
    ids = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                ids.append(json.loads(line)[key])
    return ids


def _compare(name_en: str, name_vi: str, ids: list[str] | None, expected: list[str], ordered: bool) -> list[Problem]:
    if ids is None:
        return [Problem(f"{name_en} is missing", f"thiếu {name_vi}")]
    if ids == expected or (not ordered and Counter(ids) == Counter(expected)):
        return []
    extra = len(set(ids) - set(expected))
    missing = len(set(expected) - set(ids))
    dups = sum(n - 1 for n in Counter(ids).values() if n > 1)
    detail = f"{extra} extra, {missing} missing, {dups} duplicated ids" if extra or missing or dups else "ids out of order"
    detail_vi = f"thừa {extra}, thiếu {missing}, trùng {dups} mã" if extra or missing or dups else "mã sai thứ tự"
    return [Problem(f"{name_en} does not match the chunk store ({detail})",
                    f"{name_vi} không khớp kho đoạn văn ({detail_vi})")]


def check_index(settings: Settings, *, chroma: bool = True) -> list[Problem]:
    """All broken invariants of the index under `settings.home` (empty list: the index is consistent)."""
    home = Path(settings.home)
    manifest_path = settings.manifest_path
    if not manifest_path.exists():
        return [Problem("There is no index (manifest.json is missing)", "Chưa có chỉ mục (thiếu manifest.json)",
                        "run `rag ingest` to build it", "chạy `rag ingest` để tạo chỉ mục")]
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        docs: dict[str, Any] = manifest["docs"]
    except (ValueError, KeyError, TypeError) as exc:
        return [Problem(f"manifest.json cannot be read ({exc.__class__.__name__})",
                        f"không đọc được manifest.json ({exc.__class__.__name__})", REBUILD_EN, REBUILD_VI)]
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for doc_id, info in docs.items():
        for cid in info.get("chunk_ids", []):
            if cid in owner:
                problems.append(Problem(f"chunk {cid} is listed under two documents ({owner[cid]}, {doc_id})",
                                        f"đoạn {cid} thuộc hai tài liệu ({owner[cid]}, {doc_id})"))
            owner[cid] = doc_id
    paths = Counter(str(Path(info.get("path", "")).resolve()) for info in docs.values() if info.get("path"))
    for path, n in paths.items():
        if n > 1:
            problems.append(Problem(f"{n} documents come from the same file {path}",
                                    f"{n} tài liệu cùng đến từ tệp {path}"))
    expected = list(owner)

    chunk_ids = _jsonl_ids(home / "chunks.jsonl")
    if chunk_ids is None:
        chunk_ids = []
        if expected:
            problems.append(Problem("chunks.jsonl is missing", "thiếu chunks.jsonl"))
    else:
        problems += _compare("chunks.jsonl", "chunks.jsonl", chunk_ids, expected, ordered=False)
    order = chunk_ids
    for field in ("accented", "plain"):
        ids_path = home / "bm25" / field / "ids.json"
        ids = json.loads(ids_path.read_text(encoding="utf-8")) if ids_path.exists() else None
        problems += _compare(f"BM25 field '{field}'", f"trường BM25 '{field}'", ids, order, ordered=True)
    problems += _compare("tokens.jsonl", "tokens.jsonl", _jsonl_ids(home / "tokens.jsonl"), order, ordered=True)
    problems += _compare("entities.jsonl", "entities.jsonl", _jsonl_ids(home / "entities.jsonl"), order, ordered=True)

    vectors_path = home / "vectors.npy"
    if vectors_path.exists():
        import numpy as np

        shape = np.load(vectors_path, mmap_mode="r").shape
        dim = int(manifest.get("dim", 0) or 0)
        if shape[0] != len(order) or (len(order) and dim and (len(shape) < 2 or shape[1] != dim)):
            problems.append(Problem(f"vectors.npy has shape {tuple(shape)}, expected ({len(order)}, {dim})",
                                    f"vectors.npy có kích thước {tuple(shape)}, cần ({len(order)}, {dim})"))
    elif order:
        problems.append(Problem("vectors.npy is missing", "thiếu vectors.npy"))

    if chroma:
        problems += _check_chroma(settings, order)
    return problems


def _check_chroma(settings: Settings, expected: list[str]) -> list[Problem]:
    from rag.index import Index

    try:
        col = Index(settings).collection()
        ids = col.get(include=[])["ids"]
        count = col.count()
    except Exception as exc:  # a stopped server or a damaged folder: report, never crash the check
        return [Problem(f"Chroma cannot be read ({exc.__class__.__name__}: {str(exc)[:120]})",
                        f"không đọc được Chroma ({exc.__class__.__name__})",
                        "start the Chroma server (RAG_CHROMA_HOST) or " + REBUILD_EN,
                        "khởi động máy chủ Chroma (RAG_CHROMA_HOST) hoặc " + REBUILD_VI)]
    problems = _compare("Chroma", "Chroma", list(ids), expected, ordered=False)
    if count != len(expected) and not problems:
        problems.append(Problem(f"Chroma counts {count} vectors, the chunk store {len(expected)}",
                                f"Chroma đếm {count} vector, kho đoạn văn có {len(expected)}"))
    return problems
