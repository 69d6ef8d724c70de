"""Files and folders -> raw Documents (.md/.txt with optional YAML front matter, .html, .pdf).

Text is NFC-normalised here; boilerplate is removed later by `rag.clean`. Unreadable inputs raise
`BadInput` with a sentence for the user; `load_paths` collects those per file instead of stopping.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from rag.errors import BadInput
from rag.text import nfc, strip_diacritics
from rag.types import Document

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Skipped:
    """A file that could not be loaded and the reason shown to the user."""

    path: str
    reason_en: str
    reason_vi: str


def slugify(text: str, max_len: int = 80) -> str:
    """'Điện toán đám mây 2025.md' -> 'dien-toan-dam-may-2025'."""
    slug = re.sub(r"[^a-z0-9]+", "-", strip_diacritics(text).lower()).strip("-")
    return slug[:max_len].rstrip("-") or "document"


def _decode(data: bytes, path: Path) -> str:
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadInput(
            f"{path.name} looks like a binary file, not text; it was skipped.",
            f"{path.name} có vẻ là tệp nhị phân, không phải văn bản; đã bỏ qua.",
        )
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-16" and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        return text
    raise BadInput(
        f"{path.name} is not valid UTF-8 text; save it as UTF-8 and try again.",
        f"{path.name} không phải văn bản UTF-8 hợp lệ; hãy lưu lại dạng UTF-8 rồi thử lại.",
    )


def _split_front_matter(text: str, path: Path) -> tuple[dict, str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise BadInput(
            f"The front matter of {path.name} is not valid YAML.",
            f"Phần đầu (front matter) của {path.name} không phải YAML hợp lệ.",
            detail=str(exc),
        ) from exc
    if not isinstance(meta, dict):
        meta = {}
    return meta, text[match.end() :]


def _html_to_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "iframe"]):
        tag.decompose()
    title = ""
    h1 = soup.find("h1")
    if h1 and h1.get_text(strip=True):
        title = h1.get_text(" ", strip=True)
    elif soup.title and soup.title.get_text(strip=True):
        title = soup.title.get_text(" ", strip=True)
    blocks = []
    for el in soup.find_all(["h1", "h2", "h3", "h4", "p", "li", "td", "blockquote", "figcaption", "pre"]):
        if el.find(["p", "li", "td"]):  # a container; its children are emitted themselves
            continue
        text = el.get_text(" ", strip=True)
        if text:
            blocks.append(text)
    if not blocks:  # pages without block tags: fall back to all text
        blocks = [line.strip() for line in soup.get_text("\n").splitlines() if line.strip()]
    return title, "\n\n".join(blocks)


def _pdf_to_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise BadInput(
                f"{path.name} is password-protected; remove the password and try again.",
                f"{path.name} được bảo vệ bằng mật khẩu; hãy gỡ mật khẩu rồi thử lại.",
            )
        pages = [page.extract_text() or "" for page in reader.pages]
    except BadInput:
        raise
    except (PdfReadError, ValueError, OSError, KeyError, TypeError) as exc:
        raise BadInput(
            f"{path.name} is not a readable PDF; it was skipped.",
            f"{path.name} không phải tệp PDF đọc được; đã bỏ qua.",
            detail=repr(exc),
        ) from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise BadInput(
            f"{path.name} has no extractable text (a scanned PDF?); it was skipped.",
            f"{path.name} không có văn bản trích xuất được (PDF dạng ảnh quét?); đã bỏ qua.",
        )
    return text


def load_file(path: Path) -> Document:
    """Read one file into a raw Document (metadata from front matter when present)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise BadInput(
            f"{path.name}: unsupported file type (use .txt, .md, .html or .pdf).",
            f"{path.name}: định dạng không hỗ trợ (hãy dùng .txt, .md, .html hoặc .pdf).",
        )
    try:
        title = ""
        if suffix == ".pdf":
            body = _pdf_to_text(path)
            meta: dict = {}
        else:
            text = nfc(_decode(path.read_bytes(), path))
            if suffix in (".html", ".htm"):
                title, body = _html_to_text(text)
                meta = {}
            else:
                meta, body = _split_front_matter(text, path)
    except OSError as exc:
        raise BadInput(
            f"{path.name} could not be read.", f"Không đọc được {path.name}.", detail=repr(exc)
        ) from exc
    body = nfc(body).replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    if not body.strip():
        raise BadInput(f"{path.name} is empty; it was skipped.", f"{path.name} trống; đã bỏ qua.")
    return Document(
        doc_id=str(meta.get("id") or slugify(path.stem)),
        title=nfc(str(meta.get("title") or title or "")).strip(),
        text=body,
        source=nfc(str(meta.get("source") or "")).strip(),
        date=str(meta.get("date") or "").strip(),
        language=str(meta.get("language") or "").strip(),
        url=str(meta.get("url") or "").strip(),
        path=str(path),
    )


def discover(paths: list[Path]) -> list[Path]:
    """Expand folders into the supported files they contain, sorted; raise if nothing is there."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise BadInput(f"{p} does not exist.", f"Không tìm thấy {p}.")
    return found


def load_paths(paths: list[Path]) -> tuple[list[Document], list[Skipped]]:
    """Load every file under `paths`; bad files are reported in `Skipped`, never fatal.

    Duplicate doc ids get a short hash suffix so two files can never overwrite each other's chunks.
    """
    skipped: list[Skipped] = []
    docs = list(iter_documents(discover(paths), skipped))
    return docs, skipped


def iter_documents(files: list[Path], skipped: list[Skipped]) -> Iterator[Document]:
    """`load_paths` one document at a time (ingest holds chunks, not the whole corpus's raw text);
    files that cannot be read are appended to `skipped`."""
    seen: set[str] = set()
    for f in files:
        try:
            doc = load_file(f)
        except BadInput as exc:
            skipped.append(Skipped(str(f), exc.en, exc.vi))
            continue
        if doc.doc_id in seen:
            suffix = hashlib.sha1(str(f.resolve()).encode()).hexdigest()[:6]
            doc = Document(**{**doc.__dict__, "doc_id": f"{doc.doc_id}-{suffix}"})
        seen.add(doc.doc_id)
        yield doc
