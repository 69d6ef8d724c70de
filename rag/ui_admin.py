"""The "Quản lý tài liệu / Documents" tab: upload, list, re-ingest and delete documents (admin token needed).

Thin UI over `Service.add_files / documents / reingest / delete_document`; every action checks the admin
token through the service. Without RAG_ADMIN_TOKEN the tab says how to enable it and changes nothing.
"""

# No `from __future__ import annotations` here: Gradio finds the gr.SelectData parameter by its runtime annotation.
import logging
from pathlib import Path
from typing import Any

from rag.errors import RagError

log = logging.getLogger(__name__)

TAB_LABEL = "Tài liệu / Documents"
HEADERS = ["Tiêu đề / Title", "Nguồn / Outlet", "Ngày / Date", "Số đoạn / Chunks", "Thêm lúc / Added", "ID"]
DISABLED = (
    "🔒 Quản lý tài liệu đang tắt. Khởi động ứng dụng với biến môi trường `RAG_ADMIN_TOKEN` để bật. / "
    "Document management is disabled. Start the app with `RAG_ADMIN_TOKEN` set to enable it."
)
INTRO = (
    "Tải lên tệp .md, .txt, .html, .pdf, .docx (nhiều tệp một lúc); trợ lý trả lời từ tài liệu mới ngay khi "
    "xử lý xong. / Upload .md, .txt, .html, .pdf or .docx files (several at once); the chat answers from them "
    "as soon as they are ingested."
)
GENERIC_ERROR = "Đã có lỗi không mong muốn; dữ liệu không bị thay đổi. / Something unexpected went wrong; nothing was changed."


def document_rows(service: Any) -> list[list[Any]]:
    """Rows for the documents table ([] while the index cannot be read)."""
    try:
        docs = service.documents()
    except RagError:
        return []
    return [[d.title, d.source, d.date, d.chunks, d.added_at.replace("T", " ")[:16], d.doc_id] for d in docs]


def _message(exc: RagError) -> str:
    return f"⚠️ {exc.message('vi')} / {exc.message('en')}"


def _report(report: Any) -> str:
    lines = [f"✓ {report.summary()}"]
    lines += [f"- bỏ qua / skipped {Path(str(s.path)).name}: {s.reason_vi} / {s.reason_en}" for s in report.skipped]
    return "  \n".join(lines)


def upload(service: Any, token: str, files: list[Any] | None, progress: Any = None) -> tuple[str, list[list[Any]]]:
    """Ingest uploaded files (paths from gr.File) under their own names; (message, fresh rows)."""
    try:
        service.authorize_admin(token)
        if not files:
            return "Hãy chọn tệp. / Choose files first.", document_rows(service)
        named = []
        for f in files:
            path = Path(f if isinstance(f, str) else getattr(f, "name", str(f)))
            named.append((path.name, path.read_bytes()))
        track = (lambda items, total, desc: progress.tqdm(items, total=total, desc=desc)) if progress else None
        report = service.add_files(named, progress=track)
        return _report(report), document_rows(service)
    except RagError as exc:
        return _message(exc), document_rows(service)
    except Exception:
        log.exception("Upload failed")
        return GENERIC_ERROR, document_rows(service)


def act(service: Any, action: str, token: str, doc_id: str) -> tuple[str, list[list[Any]]]:
    """Delete or re-ingest one document by id; (message, fresh rows)."""
    try:
        service.authorize_admin(token)
        doc_id = (doc_id or "").strip()
        if not doc_id:
            return "Hãy chọn một tài liệu trong bảng. / Pick a document in the table.", document_rows(service)
        report = service.delete_document(doc_id) if action == "delete" else service.reingest(doc_id)
        return _report(report), document_rows(service)
    except RagError as exc:
        return _message(exc), document_rows(service)
    except Exception:
        log.exception("Document action failed")
        return GENERIC_ERROR, document_rows(service)


def build_admin_tab(service: Any) -> dict[str, Any]:
    """Add the Documents tab inside a `gr.Blocks()`; returns its components by name."""
    import gradio as gr

    with gr.Tab(TAB_LABEL, id="admin", elem_id="admin-tab"):
        if not service.admin_enabled:
            gr.Markdown(DISABLED, elem_id="admin-disabled")
            return {}
        gr.Markdown(INTRO)
        token = gr.Textbox(label="Mã quản trị / Admin token", type="password", elem_id="admin-token")
        files = gr.File(label="Tệp / Files", file_count="multiple", type="filepath", elem_id="admin-files",
                        file_types=[".md", ".txt", ".html", ".htm", ".pdf", ".docx"])
        add = gr.Button("Thêm vào chỉ mục / Add to the index", variant="primary", elem_id="admin-upload")
        status = gr.Markdown(elem_id="admin-status")
        table = gr.Dataframe(headers=HEADERS, value=document_rows(service) if service.ready else [],
                             interactive=False, wrap=True, elem_id="admin-documents")
        with gr.Row():
            doc_id = gr.Textbox(label="ID tài liệu (bấm vào bảng) / Document id (click the table)", scale=4,
                                elem_id="admin-doc-id")
            reingest = gr.Button("Xử lý lại / Re-ingest", scale=1, elem_id="admin-reingest")
            delete = gr.Button("Xóa / Delete", variant="stop", scale=1, elem_id="admin-delete")
        refresh = gr.Button("Làm mới / Refresh", size="sm")

        def do_upload(tok: str, fs: list[Any] | None, progress=gr.Progress()):  # noqa: B008 - Gradio's API
            return upload(service, tok, fs, progress)

        def pick(evt: gr.SelectData, rows: Any) -> str:
            try:
                row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
                values = rows.values.tolist() if hasattr(rows, "values") else rows
                return str(values[row][-1])
            except (IndexError, TypeError, KeyError):
                return ""

        add.click(do_upload, [token, files], [status, table], api_visibility="private")
        delete.click(lambda t, d: act(service, "delete", t, d), [token, doc_id], [status, table],
                     api_visibility="private")
        reingest.click(lambda t, d: act(service, "reingest", t, d), [token, doc_id], [status, table],
                       api_visibility="private")
        table.select(pick, [table], doc_id, api_visibility="private")
        refresh.click(lambda: document_rows(service), None, table, api_visibility="private")
    return {"token": token, "files": files, "add": add, "status": status, "table": table, "doc_id": doc_id}
