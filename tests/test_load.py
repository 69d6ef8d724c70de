"""Loading real files of every supported kind, and the one sentence each bad file produces."""

from pathlib import Path

import pytest

from rag.errors import BadInput
from rag.load import load_file, load_paths


def _pdf_with_text(path, lines):
    """A real text PDF, drawn with matplotlib's PDF backend (fonts embedded, text extractable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8.27, 11.69))
    for i, line in enumerate(lines):
        fig.text(0.05, 0.95 - i * 0.04, line, fontsize=11)
    fig.savefig(path, format="pdf")
    plt.close(fig)


def test_markdown_front_matter_is_metadata(tmp_path):
    f = tmp_path / "a.md"
    f.write_text('---\nid: my-doc\ntitle: "Tiêu đề"\ndate: "2024-05-01"\nsource: MPI\n---\nNội dung bài.\n', encoding="utf-8")
    doc = load_file(f)
    assert (doc.doc_id, doc.title, doc.date, doc.source) == ("my-doc", "Tiêu đề", "2024-05-01", "MPI")
    assert doc.text.strip() == "Nội dung bài."


def test_html_page_drops_scripts_and_navigation(tmp_path):
    f = tmp_path / "trang.html"
    f.write_text(
        "<html><head><title>T</title><script>var x=1;</script></head><body><nav>Trang chủ | Tin tức</nav>"
        "<h1>Hợp tác bán dẫn Việt Nam – Nhật Bản</h1><p>Hai bên thống nhất đào tạo 1.000 kỹ sư.</p>"
        "<footer>Bản quyền</footer></body></html>",
        encoding="utf-8",
    )
    doc = load_file(f)
    assert doc.title == "Hợp tác bán dẫn Việt Nam – Nhật Bản"
    assert "Hai bên thống nhất đào tạo 1.000 kỹ sư." in doc.text
    assert "var x" not in doc.text and "Bản quyền" not in doc.text and "Tin tức" not in doc.text


def test_pdf_text_is_extracted(tmp_path):
    f = tmp_path / "report.pdf"
    _pdf_with_text(f, ["Semiconductor cooperation report", "Osaka office supports SMEs."])
    doc = load_file(f)
    assert "Osaka office supports SMEs." in doc.text


def test_utf16_with_bom_is_decoded(tmp_path):
    f = tmp_path / "u16.txt"
    f.write_bytes("Đổi mới sáng tạo".encode("utf-16"))
    assert load_file(f).text == "Đổi mới sáng tạo"


@pytest.mark.parametrize(
    ("name", "payload", "phrase"),
    [
        ("image.txt", bytes(range(256)) * 8, "binary"),
        ("latin1.txt", "Ð¿Ñ café".encode("latin-1") + b"\xff\xfe\xfa", "UTF-8"),
        ("bad.pdf", b"%PDF-1.4 this is not really a pdf \x00\x01", "PDF"),
        ("empty.md", b"   \n\n", "empty"),
        ("photo.jpg", b"\xff\xd8\xff", "unsupported"),
    ],
)
def test_bad_files_raise_one_clear_sentence(tmp_path, name, payload, phrase):
    f = tmp_path / name
    f.write_bytes(payload)
    with pytest.raises(BadInput) as info:
        load_file(f)
    assert phrase.lower() in info.value.en.lower()
    assert name in info.value.en and name in info.value.vi
    assert "\n" not in info.value.en and "Traceback" not in info.value.en


def test_folder_load_skips_bad_files_and_keeps_good_ones(tmp_path):
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "Bài viết tiếng Việt.txt").write_text("Tiêu đề\nNội dung thật của bài.", encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"garbage")
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04")  # a damaged Word file: skipped with a sentence
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")  # not a supported suffix: ignored in folders
    docs, skipped = load_paths([tmp_path])
    assert [d.doc_id for d in docs] == ["bai-viet-tieng-viet"]
    assert sorted(Path(s.path).name for s in skipped) == ["broken.pdf", "notes.docx"]
    assert "Word" in next(s for s in skipped if s.path.endswith(".docx")).reason_en


def test_duplicate_ids_get_distinct_suffixes(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.txt").write_text("Nội dung " + folder, encoding="utf-8")
    docs, _ = load_paths([tmp_path])
    ids = [d.doc_id for d in docs]
    assert len(set(ids)) == 2 and ids[0] == "same" and ids[1].startswith("same-")


def test_missing_path_is_bad_input(tmp_path):
    with pytest.raises(BadInput):
        load_paths([tmp_path / "nope"])


def test_iter_documents_streams_one_item_per_file_oldest_first_and_keeps_the_oldest_copy(tmp_path):
    import os

    from rag.load import Skipped, iter_documents

    text = "---\ntitle: Bài gốc\n---\nHai bên thống nhất đào tạo 1.000 kỹ sư bán dẫn trong năm năm tới."
    (tmp_path / "a-copy.md").write_text(text.replace("\n", "\r\n"), encoding="utf-8")  # same text, newer file
    (tmp_path / "m-other.md").write_text("Một bài khác hẳn, về hợp tác y tế.", encoding="utf-8")
    (tmp_path / "z-original.md").write_text(text, encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"garbage")
    for age, name in enumerate(["a-copy.md", "m-other.md", "broken.pdf", "z-original.md"]):
        os.utime(tmp_path / name, ns=(1_000_000_000 * (100 - age), 1_000_000_000 * (100 - age)))
    items = list(iter_documents([tmp_path]))
    assert len(items) == 4  # one per file, so an ingest can count its progress in files
    names = [Path(i.path).name for i in items]
    assert names == ["z-original.md", "broken.pdf", "m-other.md", "a-copy.md"]  # oldest first
    copy = items[-1]
    assert isinstance(copy, Skipped) and "same content as z-original.md" in copy.reason_en
    docs, skipped = load_paths([tmp_path])
    assert [d.doc_id for d in docs] == ["m-other", "z-original"]  # load_paths: path order
    assert sorted(Path(s.path).name for s in skipped) == ["a-copy.md", "broken.pdf"]
