"""Errors a user can cause, each carrying the one sentence they see (in Vietnamese and English).

The UI and CLI print `error.message(lang)`; logs keep the technical detail in `error.detail`.
"""

from __future__ import annotations


class RagError(Exception):
    """Base error: a user-facing sentence in both languages plus an optional technical detail."""

    vi: str = "Đã có lỗi xảy ra; dữ liệu của bạn không bị thay đổi."
    en: str = "Something went wrong; your data was not changed."

    def __init__(self, en: str | None = None, vi: str | None = None, *, detail: str = "") -> None:
        if en is not None:
            self.en = en
        if vi is not None:
            self.vi = vi
        self.detail = detail
        super().__init__(self.en if not detail else f"{self.en} ({detail})")

    def message(self, lang: str = "en") -> str:
        """The sentence to show a user asking in `lang` ("vi" or "en")."""
        return self.vi if lang == "vi" else self.en


class BadInput(RagError):
    """The user's question or file cannot be used as given."""

    vi = "Không thể dùng dữ liệu bạn nhập."
    en = "The input cannot be used."


class IndexMissing(RagError):
    """No index has been built yet under RAG_HOME."""

    vi = "Chưa có chỉ mục tài liệu; hãy chạy `rag ingest` trước."
    en = "There is no document index yet; run `rag ingest` first."


class IndexModelMismatch(RagError):
    """The index was built with a different embedding model than the one loaded now."""


class EmbeddingUnavailable(RagError):
    """Neither the configured nor the bundled embedding model could be loaded."""

    vi = "Không tải được mô hình nhúng (embedding), kể cả mô hình dự phòng đi kèm."
    en = "No embedding model could be loaded, not even the bundled fallback."


class LLMError(RagError):
    """Base for failures talking to the LLM server; the caller falls back to the extractive answer."""

    vi = "Máy chủ mô hình ngôn ngữ gặp lỗi."
    en = "The language-model server failed."


class IndexBusy(RagError):
    """Another process (or this app) is writing the index; only one writer at a time is safe."""

    vi = "Một tiến trình khác đang cập nhật chỉ mục này; hãy thử lại khi nó hoàn tất. Dữ liệu không bị thay đổi."
    en = "Another process is updating this index; try again when it has finished. Nothing was changed."


class AccessDenied(RagError):
    """A corpus-changing action without the admin token, or an API call without a valid key."""

    vi = "Bạn không có quyền thực hiện thao tác này."
    en = "You are not allowed to do this."


class ServiceBusy(RagError):
    """More requests are waiting than the service is configured to queue."""

    vi = "Hệ thống đang bận; vui lòng thử lại sau ít giây."
    en = "The assistant is busy; please try again in a few seconds."
