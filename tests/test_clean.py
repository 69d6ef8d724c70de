"""Boilerplate removal on the real seed pages: article sentences survive, sidebars never do."""

from pathlib import Path

import pytest

from rag.clean import clean_document, clean_text
from rag.load import load_file

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@pytest.fixture(scope="module")
def cleaned():
    return {p.stem: clean_document(load_file(p)) for p in sorted(CORPUS.glob("*.md"))}


ARTICLE_SENTENCES = {
    "pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025": [
        "Biểu dương cộng đồng các nhà khoa học cùng hơn 70 doanh nghiệp và 5.000 kỹ sư công nghệ thông tin",
        "ra mắt EMB-AI - ứng dụng trí tuệ nhân tạo hỗ trợ kết nối địa phương Việt Nam – Nhật Bản.",
    ],
    "dien-dan-sts-kyoto-2023": [
        "Hội nghị thường niên lần thứ 20 Diễn đàn STS thu hút sự tham gia của hơn 1.500 đại biểu",
        "Văn phòng đại diện KH&CN tại Osaka - thành phố công nghiệp và cảng biển lớn",
    ],
    "hop-tac-khcn-phap-unesco-wipo-2022": [
        "Tham gia đoàn Bộ trưởng có đại diện lãnh đạo các đơn vị chức năng thuộc Bộ Khoa học và Công nghệ",
        "xây dựng bộ chỉ số đo lường năng lực đổi mới sáng tạo cấp địa phương (PII)",
    ],
    "bo-truong-dung-lam-viec-vjoin-2023": [
        "Mạng lưới VJOIN đẩy mạnh kết nối các doanh nghiệp, tập đoàn, các chuyên gia trí thức lớn tại Nhật Bản",
        "Triển khai nghiên cứu, tham mưu một số lĩnh vực công nghệ tiềm năng như: bán dẫn, công nghệ hydrogen xanh",
    ],
    "thu-truong-giang-lam-viec-dai-su-quan-nhat-ban": [
        "Tại buổi làm việc với Đại sứ quán Việt Nam tại Nhật Bản, Thứ trưởng Nguyễn Hoàng Giang gửi lời cám ơn",
        "hỗ trợ cho Hội trí thức Việt Nam tại Nhật Bản.",
    ],
}

SIDEBAR_FRAGMENTS = [
    "Kim Liên", "Vinamilk", "Bhutan", "Venezuela", "Anh tăng cường hợp tác với ASEAN", "Đà Nẵng và các đối tác",
    "địa phương của Đức", "Ánh Dương", "Lượt xem", "BÀI VIẾT KHÁC", "Tin bài liên quan", "Cùng chuyên mục",
    "Đọc nhiều", "[Video]", "infographic", "Xin chờ trong giây lát", "Phiên bản di động", "Sign In", "Tương phản",
    "Xem với cỡ chữ", "cổ tức", "Nghị định số 263/2025", "an toàn bức xạ", "PAKN", "Tag:", "File đính kèm",
    "Theo chinhphu.vn", "Theo most.gov.vn", "GMT+7", "Ảnh: VGP",
]


@pytest.mark.parametrize("doc_id", sorted(ARTICLE_SENTENCES))
def test_article_sentences_survive(cleaned, doc_id):
    for sentence in ARTICLE_SENTENCES[doc_id]:
        assert sentence in cleaned[doc_id].text


@pytest.mark.parametrize("fragment", SIDEBAR_FRAGMENTS)
def test_sidebar_and_navigation_removed_everywhere(cleaned, fragment):
    for doc in cleaned.values():
        assert fragment not in doc.text, f"{fragment!r} left in {doc.doc_id}"


def test_duplicated_photo_captions_kept_once(cleaned):
    text = cleaned["pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025"].text
    assert text.count("Chiều 31/5, Phó Thủ tướng Nguyễn Chí Dũng gặp và làm việc") == 1
    assert text.count("thực hiện nghi thức ra mắt ứng dụng EMB-AI") == 1


def test_metadata_inferred_when_no_front_matter(tmp_path):
    raw = (CORPUS / "dien-dan-sts-kyoto-2023.md").read_text(encoding="utf-8").split("---\n", 2)[2]
    page = tmp_path / "trang tin Phú Thọ.txt"
    page.write_text(raw, encoding="utf-8")
    doc = clean_document(load_file(page))
    assert doc.doc_id == "trang-tin-phu-tho"
    assert doc.title.startswith("Thúc đẩy hợp tác, phát triển khoa học mở")
    assert doc.date == "2023-10-09"
    assert doc.source == "most.gov.vn"
    assert doc.language == "vi"
    assert "Kyoto" in doc.text and "BÀI VIẾT KHÁC" not in doc.text


def test_body_link_without_teaser_keeps_following_paragraph():
    text = (
        "Tiêu đề bài viết dài hơn mười từ để làm ví dụ thử nghiệm\n"
        "Tin liên kết thứ nhất ở giữa bài Tin liên kết thứ nhất ở giữa bài\n"
        "Đoạn nội dung thật của bài báo vẫn phải còn lại sau khi làm sạch.\n"
        "Đoạn thứ hai của bài báo.\n"
    )
    body, _title, _source = clean_text(text, "Tiêu đề bài viết dài hơn mười từ để làm ví dụ thử nghiệm")
    assert "Tin liên kết thứ nhất" not in body
    assert "Đoạn nội dung thật của bài báo vẫn phải còn lại" in body


@pytest.mark.parametrize("first_line", [
    "36°B 138°Đ",  # coordinates
    "Bài này nói về thành phố Sakai (堺市) thuộc tỉnh Osaka. Về thành phố Sakai (坂井市) thuộc tỉnh Fukui, xem bài Sakai, Fukui",
    "Honshu là hòn đảo lớn nhất của Nhật Bản, nằm giữa Hokkaido và Kyushu.",  # the first body sentence
])
def test_a_page_without_a_headline_is_titled_by_its_file_name(tmp_path, first_line):
    """An encyclopaedia page starts with coordinates, a hatnote or its first sentence: none names it, and a
    title like '36°B 138°Đ' would be shown on every citation (and hide which place the page is about)."""
    page = tmp_path / "honshu.txt"
    page.write_text(f"{first_line}\n\nHonshu là hòn đảo lớn nhất của Nhật Bản. Dân số toàn đảo là 118,3 triệu người.\n",
                    encoding="utf-8")
    doc = clean_document(load_file(page))
    assert doc.title == "honshu", doc.title
    assert "Dân số toàn đảo" in doc.text
