"""The connection finder on the real seed index: query detection, cited sections built from retrieved
sentences, the province note (old and new names alike), English rendering, the CLI command and the
Gradio tab."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import BUNDLED_MODEL
from rag.connect import (
    HEADERS,
    ConnectionAnswer,
    build_connection_answer,
    is_connection_query,
    render_markdown,
    to_json,
)
from rag.entities import extract_entities
from rag.retrieve import Filters
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
PHU_THO_VI = "Doanh nghiệp ở Phú Thọ muốn hợp tác bán dẫn với Nhật thì bắt đầu từ đâu?"
VINH_PHUC_NODIAC = "doanh nghiep o vinh phuc muon hop tac ban dan voi nhat thi bat dau tu dau?"
OSAKA_EN = "Who can help our province's companies meet partners in Osaka?"
CA_MAU_VI = "Doanh nghiệp ở Cà Mau muốn tìm đối tác Nhật Bản thì liên hệ ai?"
NATIONAL = {"vn_embassy_japan", "vn_consulate_osaka", "vn_st_office_osaka", "vn_st_office_tokyo", "vn_vjoin", "vn_nic"}
NOTE_PHU_THO = "Tài liệu không đề cập riêng đến tỉnh Phú Thọ; dưới đây là các đầu mối áp dụng toàn quốc."
NOTE_CA_MAU = "Tài liệu không đề cập riêng đến tỉnh Cà Mau; dưới đây là các đầu mối áp dụng toàn quốc."
ITEM_LINE = re.compile(r"^- .*?((?:\[\d+\])+)$")


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    "question",
    [
        PHU_THO_VI,
        VINH_PHUC_NODIAC,
        OSAKA_EN,
        "Công ty chúng tôi nên liên hệ ai để hợp tác với Nhật Bản?",
        "lien he ai de tim doi tac nhat ban",
        "Tỉnh tôi muốn kết nối doanh nghiệp với Nhật Bản",
        "Làm sao để doanh nghiệp Việt tìm đối tác ở Osaka?",
        "ai co the ho tro doanh nghiep ket noi voi Nhat Ban",
        "Where do I start if my company wants to work with Japanese firms?",
        "How can we find Japanese partners for semiconductor projects?",
        "Who should we contact about cooperation with Japan?",
        "point of contact for Vietnamese SMEs in Japan",
    ],
)
def test_connection_queries(question):
    assert is_connection_query(question)


@pytest.mark.parametrize(
    "question",
    [
        "Có bao nhiêu kỹ sư CNTT Việt Nam đang làm việc tại Nhật Bản?",
        "co bao nhieu ky su CNTT Viet Nam tai Nhat Ban",
        "EMB-AI là gì và được ra mắt khi nào?",
        "EMB-AI hỗ trợ kết nối gì?",
        "Thứ trưởng Nguyễn Hoàng Giang làm việc với ai ở Osaka?",
        "Việt Nam hợp tác với Pháp về những lĩnh vực nào?",
        "What did the Vietnamese delegation do at the STS forum in Kyoto?",
        "Which technology sectors did the Deputy Prime Minister prioritise for cooperation with Japan?",
        "When was Resolution 57 issued?",
        "",
    ],
)
def test_not_connection_queries(question):
    assert not is_connection_query(question)


# ---------------------------------------------------------------- answers


@pytest.fixture(scope="module")
def phu_tho(pipeline) -> ConnectionAnswer:
    return build_connection_answer(pipeline, PHU_THO_VI)


@pytest.fixture(scope="module")
def osaka_en(pipeline) -> ConnectionAnswer:
    return build_connection_answer(pipeline, OSAKA_EN)


def check_citations(answer: ConnectionAnswer) -> None:
    """Every item cites an existing source whose chunk contains the quote, which names the entity."""
    sources = {c.n: c for c in answer.sources}
    assert sorted(sources) == list(range(1, len(sources) + 1))
    used = set()
    for section, items in answer.sections.items():
        for item in items:
            assert item.citations, (section, item)
            for n in item.citations:
                assert n in sources, (section, item)
                assert item.quote in sources[n].chunk.text, (section, item)
                used.add(n)
            if item.kind in ("organizations", "places_jp", "programmes", "sectors") and "|" not in item.entity:
                found = extract_entities(item.quote)
                assert item.entity in getattr(found, item.kind), (section, item)
    assert used == set(sources)  # no source is listed that no line cites


def test_phu_tho_semiconductor_question(phu_tho):
    check_citations(phu_tho)
    who = {i.entity for i in phu_tho.who}
    assert who & NATIONAL, who
    assert phu_tho.province == "Phú Thọ" and phu_tho.sector == "semiconductors"
    assert phu_tho.province_note == NOTE_PHU_THO  # the seed articles never mention Phú Thọ
    assert phu_tho.sectors and "semiconductors" in phu_tho.sectors[0].entity.split("|")
    # Government/party bodies and French/British agencies are not contact points for Japan.
    assert not who & {"vn_government", "vn_politburo", "fr_cnes", "fr_bpifrance", "gb_ukipo"}
    assert phu_tho.next_steps and all(i.kind == "next_step" for i in phu_tho.next_steps)


def test_old_province_name_without_tones_gives_the_new_province(pipeline):
    answer = build_connection_answer(pipeline, VINH_PHUC_NODIAC)
    check_citations(answer)
    assert answer.province == "Phú Thọ" and answer.province_asked == "Vĩnh Phúc"
    assert answer.province_note.endswith(NOTE_PHU_THO)
    assert "Vĩnh Phúc nay thuộc tỉnh Phú Thọ" in answer.province_note
    assert {i.entity for i in answer.who} & NATIONAL


def test_unmentioned_province_gets_national_contacts_and_the_note(pipeline):
    answer = build_connection_answer(pipeline, CA_MAU_VI)
    check_citations(answer)
    assert answer.province_note == NOTE_CA_MAU
    assert {i.entity for i in answer.who} & NATIONAL
    text = render_markdown(answer)
    assert text.startswith(f"> {NOTE_CA_MAU}")
    # The same from the dropdown alone, with the merged-away name Bạc Liêu.
    by_field = build_connection_answer(pipeline, None, province="bac lieu")
    assert by_field.province == "Cà Mau"
    assert by_field.province_note.endswith(NOTE_CA_MAU)
    assert {i.entity for i in by_field.who} & NATIONAL


def test_mentioned_province_gets_no_note(pipeline):
    answer = build_connection_answer(pipeline, "Doanh nghiệp ở Hà Nội muốn liên hệ với NIC thì làm thế nào?")
    assert answer.province == "Hà Nội"
    assert answer.province_note == ""  # NIC's facilities 'tại Hà Nội và Hòa Lạc'
    # NIC is listed under Hà Nội, since its quote names the city; every item there names Hà Nội.
    assert "vn_nic" in {i.entity for i in answer.local}
    assert all("Hà Nội" in extract_entities(i.quote).provinces() for i in answer.local)
    assert not any("Hà Nội" in extract_entities(i.quote).provinces() for i in answer.who)
    assert render_markdown(answer).startswith("**Tại Hà Nội**")
    check_citations(answer)


def test_english_question_gets_english_headers(osaka_en):
    check_citations(osaka_en)
    text = render_markdown(osaka_en)
    assert osaka_en.language == "en"
    assert f"**{HEADERS['en']['who']}**" in text and f"**{HEADERS['en']['sources']}**" in text
    assert not any(h in text for h in HEADERS["vi"].values())
    assert "Consulate General of Viet Nam in Osaka" in {i.text for i in osaka_en.who}
    assert "Osaka" in {i.entity for i in osaka_en.where}
    assert osaka_en.province_note == ""  # no province asked


@pytest.mark.parametrize("fixture", ["phu_tho", "osaka_en"])
def test_every_rendered_line_cites_an_existing_source(fixture, request):
    answer: ConnectionAnswer = request.getfixturevalue(fixture)
    text = render_markdown(answer)
    lines = text.splitlines()
    heading = f"**{HEADERS[answer.language]['sources']}**"
    body, sources = lines[: lines.index(heading)], lines[lines.index(heading) + 1 :]
    listed = {int(m.group(1)) for m in (re.match(r"^\[(\d+)\] ", s) for s in sources) if m}
    assert listed == {c.n for c in answer.sources} and listed
    items = [line for line in body if line.startswith("- ")]
    assert len(items) == sum(len(v) for v in answer.sections.values())
    for line in items:
        m = ITEM_LINE.match(line)
        assert m, line
        assert {int(n) for n in re.findall(r"\d+", m.group(1))} <= listed, line
    for header in ("who", "what", "where", "sectors", "next_steps"):
        assert (f"**{HEADERS[answer.language][header]}**" in text) == bool(answer.sections[header])


def test_filters_restrict_the_sources(pipeline):
    answer = build_connection_answer(pipeline, OSAKA_EN, filters=Filters(doc_ids=("dien-dan-sts-kyoto-2023",)))
    assert answer.sources
    assert {c.chunk.doc_id for c in answer.sources} == {"dien-dan-sts-kyoto-2023"}
    assert {"vn_consulate_osaka", "vn_st_office_osaka"} <= {i.entity for i in answer.who}
    check_citations(answer)


def test_json_is_serialisable_and_complete(phu_tho):
    obj = json.loads(json.dumps(to_json(phu_tho), ensure_ascii=False))
    assert {"who", "what", "where", "sectors", "next_steps", "sources", "province_note"} <= set(obj)
    chunk_text = {c.n: c.chunk.text for c in phu_tho.sources}
    for item in obj["who"]:
        assert all(item["quote"] in chunk_text[n] for n in item["citations"])


# ---------------------------------------------------------------- CLI


def _run_connect(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_HOME=str(home), RAG_EMBEDDING_MODEL=BUNDLED_MODEL, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONIOENCODING="utf-8", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "rag.cli", "connect", *args], env=env, cwd=home.parent,
                          capture_output=True, text=True, encoding="utf-8", timeout=300, check=False)


def test_cli_connect_json_and_errors(seed_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(seed_home, home)
    run = _run_connect(home, "--province", "Vĩnh Phúc", "--sector", "bán dẫn", "--json")
    assert run.returncode == 0, run.stderr
    obj = json.loads(run.stdout)
    assert obj["province"] == "Phú Thọ" and obj["sector"] == "semiconductors"
    assert {i["entity"] for i in obj["who"]} & NATIONAL
    assert obj["province_note"].endswith(NOTE_PHU_THO)
    run = _run_connect(home)  # nothing to search for: refused before any model is loaded
    assert run.returncode == 1
    assert "Give a QUESTION, --province or --sector." in run.stderr


# ---------------------------------------------------------------- UI


def test_connections_tab_over_http(service):
    import gradio as gr
    from gradio_client import Client

    from rag.ui_connect import (
        NEED_INPUT,
        OVERVIEW_HEADERS,
        TAB_LABEL,
        build_connections_tab,
        connect_markdown,
        overview_figure,
    )

    with gr.Blocks() as demo:
        parts = build_connections_tab(service)
    assert parts["province"].choices and len(parts["province"].choices) == 34
    assert parts["table"].value["headers"][0].startswith("Thực thể")
    rows, _figure = parts["load"]()  # filled when a page loads: the index may still be loading at build time
    assert list(rows.columns) == OVERVIEW_HEADERS  # a DataFrame, so the header row stays
    assert any(name.startswith("Đại sứ quán Việt Nam tại Nhật Bản") for name in rows[OVERVIEW_HEADERS[0]])
    assert TAB_LABEL == "Kết nối / Connections"
    assert connect_markdown(service, None, "", "  ") == NEED_INPUT

    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        text = client.predict("Vĩnh Phúc", "semiconductors", "", api_name="/connect")
    finally:
        demo.close()
    assert f"**{HEADERS['vi']['who']}**" in text
    assert "Tài liệu không đề cập riêng đến tỉnh Phú Thọ" in text
    assert re.search(r"^- .*\[\d+\]$", text, re.M)

    from rag.ui_connect import overview_rows

    fig = overview_figure(overview_rows(service))
    assert len(fig.axes) == len({r["kind"] for r in overview_rows(service)})
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")


def test_connect_and_retrieve_share_one_entity_index(pipeline):
    # Rebuilding the entity index costs ~330 ms at 100k chunks; both runs must hit the same cache entry.
    from rag import entities

    pipeline.retrieve("Tổng Lãnh sự quán Việt Nam tại Osaka")
    shared = entities._INDEX_CACHE[0]
    build_connection_answer(pipeline, PHU_THO_VI)
    build_connection_answer(pipeline, OSAKA_EN, filters=Filters(date_from="2023"))
    assert entities._INDEX_CACHE[0] is shared


# Encyclopaedia-style sentences that name Japanese places, Japan or an international body next to a
# seed-like question's words, without tying Vietnam to Japan: what a real index holds by the hundred.
NEARBY = {
    "tokyo.md": (
        "---\ntitle: \"Tokyo\"\ndate: \"2020-01-01\"\n---\n"
        "Tokyo, cũng như Osaka, đã được thiết kế từ thập niên 1900 như là thành phố đường sắt với nhiều doanh nghiệp.\n\n"
        "Một là trận động đất lớn Kanto vào năm 1923, tai họa kia là chiến tranh; Osaka cũng bị tàn phá.\n"
    ),
    "campuchia.md": (
        "---\ntitle: \"Campuchia\"\ndate: \"2019-01-01\"\n---\n"
        "Sau các cuộc đàm phán hòa bình Paris, trong đó có Mỹ, Úc, Liên minh châu Âu (EU) và Nhật Bản, "
        "Campuchia tìm kiếm đối tác cho doanh nghiệp nhỏ và vừa.\n"
    ),
}


@pytest.fixture(scope="module")
def nearby(tmp_path_factory, loaded_embedder):
    from tests.conftest import pipeline_beside_seeds

    return pipeline_beside_seeds(tmp_path_factory.mktemp("nearby"), loaded_embedder, NEARBY)


@pytest.mark.parametrize("question", [
    "Một doanh nghiệp nhỏ và vừa ở tỉnh muốn tìm đối tác tại Osaka nên nhờ cơ quan nào hỗ trợ?",
    "doanh nghiep nho o tinh muon tim doi tac o osaka thi hoi ai",
    "Which offices can help a provincial SME find business partners in Osaka?",
])
def test_a_city_question_lists_that_citys_contacts_and_nothing_unrelated(nearby, question):
    """The Osaka offices answer; a Tokyo railway, the Kanto earthquake, the EU in Cambodia and a sector
    list nobody asked for do not belong in the answer, however many documents name Osaka or Japan."""
    answer = build_connection_answer(nearby, question)
    check_citations(answer)
    who = {i.entity for i in answer.who}
    assert {"vn_consulate_osaka", "vn_st_office_osaka"} <= who, who
    assert all("Osaka" in i.quote for i in answer.who), [i.quote for i in answer.who]
    # The seed sentence naming 'đại diện KH&CN tại Tokyo/Osaka' does not make the Tokyo office an Osaka contact.
    assert "vn_st_office_tokyo" not in who, who
    assert [i.entity for i in answer.where] == ["osaka"] or {i.text for i in answer.where} == {"Osaka"}, answer.where
    assert not answer.sectors, answer.sectors  # no sector asked
    docs = {c.chunk.doc_id for c in answer.sources}
    assert not docs & {"tokyo", "campuchia"}, docs
