"""Files and folders -> raw Documents (.md/.txt with optional YAML front matter, .html, .pdf).

Text is NFC-normalised here; boilerplate is removed later by `rag.clean`. Unreadable inputs raise
`BadInput` with a sentence for the user; `iter_documents` (streamed, for ingest) and `load_paths` report
those per file instead of stopping.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from rag.errors import BadInput
from rag.guard import Limits, check_filename, check_text_shape, sniff_type, text_too_long, too_large
from rag.text import nfc, strip_diacritics
from rag.types import Document

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")
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


_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)"
    r"|opacity\s*:\s*0(?:\.0+)?\s*(?:;|$|!)|(?:^|;)\s*(?:height|width|max-height)\s*:\s*0(?:px)?\s*(?:;|$|!)"
    r"|text-indent\s*:\s*-\d{3,}|(?:left|top)\s*:\s*-\d{4,}px|clip\s*:\s*rect\(\s*0",
    re.IGNORECASE,
)
_WHITE = {"white", "#fff", "#ffffff", "#fefefe", "rgb(255,255,255)", "rgba(255,255,255,1)", "hsl(0,0%,100%)"}
_CSS_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")


def _colour(style: str, prop: str) -> str:
    m = re.search(rf"(?:^|;)\s*{prop}\s*:\s*([^;!]+)", style, re.IGNORECASE)
    return re.sub(r"\s+", "", m.group(1)).lower() if m else ""


def _is_hidden_style(style: str) -> bool:
    """Whether an inline style hides its text from readers: display:none, zero size/opacity,
    off-screen, or white text on a white (or default white) background."""
    if _HIDDEN_STYLE.search(style):
        return True
    colour = _colour(style, "color")
    background = _colour(style, "background-color") or _colour(style, "background")
    return colour in _WHITE and (not background or background in _WHITE)


def _drop_hidden(soup: object) -> int:
    """Remove elements readers cannot see (inline styles, `hidden`, simple class/id rules in <style>);
    hidden text is a classic carrier of prompt injections. Returns how many were removed."""
    hidden_selectors: list[str] = []
    for style in soup.find_all("style"):  # type: ignore[attr-defined]
        for selectors, body in _CSS_RULE.findall(style.get_text() or ""):
            if _is_hidden_style(body):
                hidden_selectors += [s.strip() for s in selectors.split(",") if re.fullmatch(r"[.#]?[\w-]+", s.strip())]
    removed = 0
    for el in list(soup.find_all(True)):  # type: ignore[attr-defined]
        if getattr(el, "decomposed", False):
            continue
        attrs = el.attrs or {}
        classes = attrs.get("class") or []
        hidden = (
            "hidden" in attrs
            or str(attrs.get("aria-hidden", "")).lower() == "true"
            or _is_hidden_style(str(attrs.get("style", "")))
            or any(f".{c}" in hidden_selectors for c in classes)
            or (attrs.get("id") and f"#{attrs['id']}" in hidden_selectors)
            or (el.name in hidden_selectors)
        )
        if hidden:
            el.decompose()
            removed += 1
    return removed


def _html_to_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    _drop_hidden(soup)
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "iframe",
                     "template", "svg", "object", "embed"]):
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


def _pdf_to_text(path: Path, limits: Limits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise BadInput(
                f"{path.name} is password-protected; remove the password and try again.",
                f"{path.name} được bảo vệ bằng mật khẩu; hãy gỡ mật khẩu rồi thử lại.",
            )
        if len(reader.pages) > limits.max_pdf_pages:
            raise BadInput(
                f"{path.name} has {len(reader.pages)} pages, over the {limits.max_pdf_pages} page limit "
                "(RAG_MAX_PDF_PAGES); it was skipped.",
                f"{path.name} có {len(reader.pages)} trang, vượt giới hạn {limits.max_pdf_pages} trang "
                "(RAG_MAX_PDF_PAGES); đã bỏ qua.",
            )
        pages: list[str] = []
        total = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            total += len(text)
            if total > limits.max_document_chars:
                # A decompression bomb or a giant report: stop before memory does.
                raise text_too_long(path.name, limits)
            pages.append(text)
    except BadInput:
        raise
    except MemoryError as exc:
        raise _unreadable_pdf(path, exc) from exc
    except (PdfReadError, PyPdfError, ValueError, OSError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, AssertionError, ZeroDivisionError) as exc:
        raise _unreadable_pdf(path, exc) from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise BadInput(
            f"{path.name} has no extractable text (a scanned PDF?); it was skipped.",
            f"{path.name} không có văn bản trích xuất được (PDF dạng ảnh quét?); đã bỏ qua.",
        )
    return text


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_to_text(path: Path, limits: Limits) -> tuple[str, str]:
    """(title, text) of a Word file: its paragraphs in order, the document title from its properties.

    A .docx is a ZIP of XML parts; the declared size of the main part is checked before it is read, so a
    ZIP that expands to gigabytes gets a sentence, not an out-of-memory crash.
    """
    import zipfile
    from xml.etree import ElementTree

    unreadable = BadInput(
        f"{path.name} is not a readable Word (.docx) file; it was skipped.",
        f"{path.name} không phải tệp Word (.docx) đọc được; đã bỏ qua.",
    )
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("word/document.xml")
            if info.file_size > 20 * limits.max_document_chars:  # XML markup is bulky; text is a fraction
                raise text_too_long(path.name, limits)
            root = ElementTree.fromstring(z.read(info))
            title = ""
            if "docProps/core.xml" in z.namelist() and z.getinfo("docProps/core.xml").file_size < 1_000_000:
                core = ElementTree.fromstring(z.read("docProps/core.xml"))
                found = core.find("{http://purl.org/dc/elements/1.1/}title")
                title = (found.text or "").strip() if found is not None else ""
    except BadInput:
        raise
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError, ValueError, RuntimeError) as exc:
        raise BadInput(unreadable.en, unreadable.vi, detail=repr(exc)) from exc
    paragraphs = []
    for para in root.iter(f"{_W}p"):
        text = "".join(node.text or "" for node in para.iter() if node.tag in (f"{_W}t", f"{_W}tab"))
        if text.strip():
            paragraphs.append(text.strip())
    return title, "\n\n".join(paragraphs)


def _unreadable_pdf(path: Path, exc: BaseException) -> BadInput:
    return BadInput(
        f"{path.name} is not a readable PDF (damaged, or content that expands beyond safe limits); it was skipped.",
        f"{path.name} không phải tệp PDF đọc được (bị hỏng, hoặc nội dung giải nén vượt giới hạn an toàn); "
        "đã bỏ qua.",
        detail=repr(exc),
    )


def load_file(path: Path, limits: Limits | None = None) -> Document:
    """Read one file into a raw Document (metadata from front matter when present).

    The parser is chosen by content (`rag.guard.sniff_type`), the extension only decides which files a
    folder scan picks up; `limits` caps size, pages and text length (defaults: `Limits()`).
    """
    path = Path(path)
    limits = limits or Limits()
    check_filename(path.name)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise BadInput(
            f"{path.name}: unsupported file type (use .txt, .md, .html, .pdf or .docx).",
            f"{path.name}: định dạng không hỗ trợ (hãy dùng .txt, .md, .html, .pdf hoặc .docx).",
        )
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise too_large(path.name, size, limits)
        if size == 0:
            raise BadInput(f"{path.name} is empty; it was skipped.", f"{path.name} trống; đã bỏ qua.")
        with path.open("rb") as f:
            head = f.read(8192)
        kind = sniff_type(head, path.name)
        if suffix == ".pdf" and kind != "pdf":  # named a PDF but is not one: damaged or disguised
            raise _unreadable_pdf(path, ValueError("no %PDF- header"))
        title = ""
        meta: dict = {}
        if kind == "pdf":
            body = _pdf_to_text(path, limits)
        elif kind == "docx":
            title, body = _docx_to_text(path, limits)
        else:
            data = path.read_bytes()[: limits.max_bytes + 1]
            text = nfc(_decode(data, path))
            if kind == "html":  # minified HTML is legitimately one long line: check the extracted text only
                title, body = _html_to_text(text)
            else:
                meta, body = _split_front_matter(text, path)
    except OSError as exc:
        raise BadInput(
            f"{path.name} could not be read.", f"Không đọc được {path.name}.", detail=repr(exc)
        ) from exc
    body = nfc(body).replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    check_text_shape(body, path.name, limits)
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


def _content_key(text: str) -> bytes:
    """Identity of a document's text, blind to whitespace and case (a copy under another name)."""
    return hashlib.sha256(" ".join(text.casefold().split()).encode("utf-8")).digest()


def iter_documents(paths: list[Path], limits: Limits | None = None) -> Iterator[Document | Skipped]:
    """Load the files under `paths` one at a time: one Document or Skipped per file, oldest file first.

    Streaming, so an ingest never holds the whole corpus: duplicates are caught by a content hash kept
    per document (32 bytes), not by comparing loaded documents. Files come oldest first (ties in path
    order), so the first file with a given text is the one kept and a later copy under another name is
    skipped: an indexed original is never swapped for a new copy. A doc id already taken gets a short
    hash suffix, so two files can never overwrite each other's chunks.
    """
    files = discover(paths)
    keeper: dict[bytes, Path] = {}
    seen: set[str] = set()
    for f in sorted(files, key=_mtime):  # stable: ties keep path order
        try:
            doc = load_file(f, limits)
        except BadInput as exc:
            yield Skipped(str(f), exc.en, exc.vi)
            continue
        first = keeper.setdefault(_content_key(doc.text), f)
        if first != f:
            yield Skipped(
                str(f),
                f"{f.name} has the same content as {first.name}; it was skipped so its passages are not indexed twice.",
                f"{f.name} có nội dung trùng với {first.name}; đã bỏ qua để không lập chỉ mục hai lần.",
            )
            continue
        if doc.doc_id in seen:
            suffix = hashlib.sha1(str(f.resolve()).encode()).hexdigest()[:6]
            doc = Document(**{**doc.__dict__, "doc_id": f"{doc.doc_id}-{suffix}"})
        seen.add(doc.doc_id)
        yield doc


def load_paths(paths: list[Path], limits: Limits | None = None) -> tuple[list[Document], list[Skipped]]:
    """Every file under `paths` loaded (`iter_documents`), documents in path order; bad files and
    copies are reported in `Skipped`, never fatal."""
    order = {str(f): i for i, f in enumerate(discover(paths))}
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for item in iter_documents(paths, limits):
        (skipped if isinstance(item, Skipped) else docs).append(item)  # type: ignore[arg-type]
    docs.sort(key=lambda d: order.get(d.path, 0))
    return docs, skipped


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
