"""Guards at the edges: what may come in (file names, file types, sizes) and what may go out of an LLM.

Inbound (used by `rag.load` and upload handlers):
- `check_filename` rejects names with `..`, absolute paths, NUL or control characters;
- `sniff_type` decides the parser from the bytes, not the extension (`%PDF-` is a PDF, markup that
  opens with `<html`/`<!doctype html` is HTML, known binary formats are refused);
- `Limits` holds the size/page/length caps (from `Settings`).

Outbound (used on LLM answers before anyone sees them, OWASP LLM02/LLM05):
- `scrub_answer` removes secret-looking strings (API keys, private keys, tokens) and "canary-like"
  identifiers that occur in no cited source, removes configured secrets verbatim, and tells the caller
  to reject the answer when it repeats a long span of the system prompt;
- `mask_suspicious` does the source-free part for text still streaming.

Shortcut: secrets are recognised by shape (well-known key prefixes, long mixed letter+digit tokens),
not by entropy estimation; a real identifier from a document survives because it occurs in the source.
"""

from __future__ import annotations

import errno
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rag.errors import BadInput, RagError

# ------------------------------------------------------------------------------------------ inbound


@dataclass(frozen=True)
class Limits:
    """Caps on one input file; the defaults equal Settings' defaults."""

    max_file_mb: float = 20.0
    max_pdf_pages: int = 1000
    max_document_chars: int = 2_000_000
    max_line_chars: int = 100_000

    @classmethod
    def from_settings(cls, settings: object) -> Limits:
        """The limits configured in a `rag.config.Settings` (fields of the same names)."""
        return cls(**{f: getattr(settings, f) for f in cls.__dataclass_fields__ if hasattr(settings, f)})

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


def check_filename(name: str) -> str:
    """The bare file name of an upload, or BadInput for path tricks and control characters.

    >>> check_filename("Báo cáo 2025.pdf")
    'Báo cáo 2025.pdf'
    """
    raw = name or ""
    shown = raw.encode("unicode_escape").decode("ascii")[:80]
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in raw) or "\x00" in raw:
        raise BadInput(
            f"The file name {shown!r} contains control characters; rename the file and try again.",
            f"Tên tệp {shown!r} chứa ký tự điều khiển; hãy đổi tên tệp rồi thử lại.",
        )
    parts = re.split(r"[\\/]+", raw)
    if (
        not raw.strip()
        or raw.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", raw)
        or any(p in ("..", ".") for p in parts)
        or len(parts) > 1
    ):
        raise BadInput(
            f"The file name {shown!r} is not a plain file name (no folders, '..' or absolute paths); "
            "rename the file and try again.",
            f"Tên tệp {shown!r} không phải tên tệp đơn thuần (không được chứa thư mục, '..' hay đường dẫn "
            "tuyệt đối); hãy đổi tên tệp rồi thử lại.",
        )
    return unicodedata.normalize("NFC", raw)


Kind = Literal["pdf", "html", "text", "docx"]

_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (or Word/Excel file)"), (b"\x7fELF", "a program"), (b"MZ", "a program"),
    (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ", "an xz archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"), (b"Rar!", "a RAR archive"), (b"\xd0\xcf\x11\xe0", "an old Office file"),
    (b"RIFF", "a media file"), (b"ID3", "an audio file"), (b"\x00\x00\x00", "a media file"),
    (b"SQLite format", "a database"),
)
_HTML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
                         re.IGNORECASE | re.DOTALL)


def sniff_type(head: bytes, name: str) -> Kind:
    """The parser for a file from its first bytes (`head`); BadInput for formats we cannot read."""
    if head.lstrip(b"\xef\xbb\xbf\r\n\t ")[:5] == b"%PDF-" or head[:1024].find(b"%PDF-") != -1:
        return "pdf"
    if head.startswith(b"PK\x03\x04") and name.lower().endswith(".docx"):
        return "docx"  # a Word file is a ZIP; rag.load checks it holds word/document.xml within limits
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        for magic, what in _BINARY_MAGIC:
            if head.startswith(magic):
                raise BadInput(
                    f"{name} is {what}, not a text, HTML or PDF document; it was skipped.",
                    f"{name} là {_VI_WHAT.get(what, 'tệp nhị phân')}, không phải tài liệu văn bản, HTML hay PDF; "
                    "đã bỏ qua.",
                )
    if _HTML_START.match(head[:4096]):
        return "html"
    return "text"


_VI_WHAT = {
    "a PNG image": "ảnh PNG", "a JPEG image": "ảnh JPEG", "a GIF image": "ảnh GIF",
    "a ZIP archive (or Word/Excel file)": "tệp nén ZIP (hoặc Word/Excel)", "a program": "tệp chương trình",
    "a gzip archive": "tệp nén gzip", "a bzip2 archive": "tệp nén bzip2", "an xz archive": "tệp nén xz",
    "a 7-Zip archive": "tệp nén 7-Zip", "a RAR archive": "tệp nén RAR", "an old Office file": "tệp Office cũ",
    "a media file": "tệp đa phương tiện", "an audio file": "tệp âm thanh", "a database": "tệp cơ sở dữ liệu",
}


ALLOWED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")


def check_upload(name: str, head: bytes, size: int, limits: Limits) -> tuple[str, Kind]:
    """(safe file name, parser kind) for an uploaded file, or BadInput with one sentence.

    Checks, in order: the name (no folders, `..`, absolute paths or control characters), the extension
    (a supported document type), the size (`limits.max_file_mb`, also enforced by Gradio's
    `max_file_size`), emptiness, and the content (`sniff_type`; a `.pdf` must really be a PDF). Store the
    file under the returned name inside the upload folder, never under the name as sent.
    """
    safe = check_filename(name)
    suffix = ("." + safe.rsplit(".", 1)[-1].lower()) if "." in safe else ""
    if suffix not in ALLOWED_SUFFIXES:
        raise BadInput(
            f"{safe}: unsupported file type (use .txt, .md, .html, .pdf or .docx).",
            f"{safe}: định dạng không hỗ trợ (hãy dùng .txt, .md, .html, .pdf hoặc .docx).",
        )
    if size > limits.max_bytes:
        raise too_large(safe, size, limits)
    if size == 0:
        raise BadInput(f"{safe} is empty; it was skipped.", f"{safe} trống; đã bỏ qua.")
    kind = sniff_type(head, safe)
    if suffix == ".pdf" and kind != "pdf":
        raise BadInput(
            f"{safe} is named as a PDF but is not one; it was skipped.",
            f"{safe} có đuôi PDF nhưng không phải tệp PDF; đã bỏ qua.",
        )
    return safe, kind


def too_large(name: str, size: int, limits: Limits) -> BadInput:
    """The sentence for a file over the size limit."""
    mb = size / 1024 / 1024
    return BadInput(
        f"{name} is {mb:.1f} MB, over the {limits.max_file_mb:g} MB limit (RAG_MAX_FILE_MB); it was skipped.",
        f"{name} có dung lượng {mb:.1f} MB, vượt giới hạn {limits.max_file_mb:g} MB (RAG_MAX_FILE_MB); đã bỏ qua.",
    )


def text_too_long(name: str, limits: Limits) -> BadInput:
    """The sentence for a document whose text exceeds `max_document_chars`."""
    return BadInput(
        f"{name} holds more than {limits.max_document_chars:,} characters of text "
        "(RAG_MAX_DOCUMENT_CHARS); split it into smaller documents.",
        f"{name} chứa hơn {limits.max_document_chars:,} ký tự văn bản (RAG_MAX_DOCUMENT_CHARS); "
        "hãy tách thành các tài liệu nhỏ hơn.",
    )


def check_text_shape(text: str, name: str, limits: Limits) -> None:
    """BadInput for extracted text that is too long or has an absurdly long line (minified data, not prose)."""
    if len(text) > limits.max_document_chars:
        raise text_too_long(name, limits)
    longest = max((len(line) for line in text.split("\n")), default=0)
    if longest > limits.max_line_chars:
        raise BadInput(
            f"{name} has a line of {longest:,} characters (limit {limits.max_line_chars:,}, "
            "RAG_MAX_LINE_CHARS); it does not look like a readable document and was skipped.",
            f"{name} có một dòng dài {longest:,} ký tự (giới hạn {limits.max_line_chars:,}, "
            "RAG_MAX_LINE_CHARS); không giống tài liệu đọc được nên đã bỏ qua.",
        )


class StorageFull(RagError):
    """Writing the index failed for lack of space (or a file-size limit); nothing was replaced."""

    vi = (
        "Ổ đĩa đã đầy (hoặc vượt giới hạn kích thước tệp) khi ghi chỉ mục; chỉ mục cũ không bị thay đổi và vẫn "
        "trả lời được. Hãy giải phóng dung lượng rồi chạy lại `rag ingest`."
    )
    en = (
        "The disk is full (or a file-size limit was reached) while writing the index; the previous index is "
        "unchanged and still answers. Free some space and run `rag ingest` again."
    )


_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_MESSAGES = re.compile(r"disk i/o error|database or disk is full|no space left|file too large|quota exceeded",
                            re.IGNORECASE)


def storage_error(exc: BaseException) -> StorageFull | None:
    """A StorageFull for an exception that means "out of space" (OSError ENOSPC/EFBIG/EDQUOT, or SQLite's
    disk errors as Chroma reports them), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the cause may sit down the chain
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return StorageFull(detail=repr(current))
        if _FULL_MESSAGES.search(str(current)):
            return StorageFull(detail=repr(current))
        current = current.__cause__ or current.__context__
    return None


class VectorStoreUnavailable(RagError):
    """The Chroma server could not be reached; answers resume by themselves once it is back."""

    vi = "Không kết nối được máy chủ Chroma (kho vector); hãy kiểm tra máy chủ rồi thử lại sau giây lát."
    en = "The Chroma vector server cannot be reached; check that it is running and try again in a moment."


def store_unavailable(exc: BaseException) -> VectorStoreUnavailable | None:
    """A VectorStoreUnavailable for connection failures talking to a Chroma server (refused, reset,
    timed out, a proxy's 502/503), else None."""
    import httpx

    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return VectorStoreUnavailable(detail=repr(exc))
    text = str(exc)
    if re.search(r"could not connect|connection (?:refused|reset|aborted)|server disconnected|"
                 r"\b50[234]\b.*(?:bad gateway|unavailable|gateway)", text, re.IGNORECASE):
        return VectorStoreUnavailable(detail=repr(exc))
    return None


# ------------------------------------------------------------------------------------------ outbound

REDACTED = "[đã ẩn / redacted]"
_SECRET_SHAPES = re.compile(
    r"sk-[A-Za-z0-9_\-]{12,}"  # OpenAI-style keys (sk-, sk-proj-…)
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google API keys
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{5,}"  # JWTs
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
)
# A token of 10+ letters/digits/-/_ that mixes letters and digits ("CANARY-7F3A9C21"): the shape of
# canaries, ids and keys. Kept when a cited source contains it (document codes, URLs).
_ID_LIKE = re.compile(r"(?<![\w\-])(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[A-Za-z0-9][\w\-]{9,}(?![\w\-])")
_PROMPT_SPAN_WORDS = 12  # an answer repeating this many consecutive words of the system prompt is rejected


@dataclass(frozen=True)
class Scrubbed:
    """An LLM answer after the output guard: the text shown, what was removed, whether to reject it."""

    text: str
    removed: tuple[str, ...] = ()
    reject: bool = False


def mask_suspicious(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with configured secrets and secret-shaped strings replaced by a marker (no source check)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _SECRET_SHAPES.sub(REDACTED, text)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold())


def repeats_prompt(text: str, prompt: str, span: int = _PROMPT_SPAN_WORDS) -> bool:
    """Whether `text` repeats `span` consecutive words of `prompt` (a system-prompt leak)."""
    p = _words(prompt)
    if len(p) < span:
        return False
    grams = {tuple(p[i : i + span]) for i in range(len(p) - span + 1)}
    t = _words(text)
    return any(tuple(t[i : i + span]) in grams for i in range(len(t) - span + 1))


def scrub_answer(
    text: str, sources: Iterable[str], *, secrets: Iterable[str] = (), system_prompt: str = ""
) -> Scrubbed:
    """Apply the output guard to an LLM answer given the texts of the sources it cites.

    Secret-shaped strings and letter+digit identifiers that occur in none of `sources` are removed;
    configured `secrets` (e.g. the API key) are removed wherever they appear; an answer that repeats the
    system prompt is marked `reject` (the caller shows the extractive answer instead).
    """
    haystack = "\n".join(sources).casefold()
    removed: list[str] = []
    secret_list = [s for s in secrets if s and len(s) >= 4]
    for secret in secret_list:
        if secret in text:
            removed.append(secret)
            text = text.replace(secret, REDACTED)

    def drop(m: re.Match[str]) -> str:
        token = m.group(0)
        if token.casefold() in haystack and not any(s in token for s in secret_list):
            return token
        removed.append(token)
        return REDACTED

    text = _SECRET_SHAPES.sub(drop, text)
    text = _ID_LIKE.sub(drop, text)
    reject = bool(system_prompt) and repeats_prompt(text, system_prompt)
    return Scrubbed(text=text, removed=tuple(removed), reject=reject)


# Chat-template control tokens and role headers that must never reach a model as live syntax.
_CHAT_CONTROL = re.compile(
    r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|"
    r"begin_of_text|end_of_text)\|>|\[/?INST\]|<</?SYS>>|<start_of_turn>|<end_of_turn>",
    re.IGNORECASE,
)


def defang_control_tokens(text: str) -> str:
    """Chat-template tokens in document text (`<|im_start|>system`, `[INST]`) made inert for any template:
    `<|im_start|>` becomes `‹|im_start|›`, which no tokenizer maps to its special token."""
    return _CHAT_CONTROL.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›").replace("[", "⟦").replace("]", "⟧"), text)
