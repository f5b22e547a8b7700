"""KILT records: clean-up, disambiguation, store ingestion with rejects and crash/resume."""
import json
import sqlite3
from pathlib import Path

import pytest

from data_gen.kilt import KiltFormatError, parse_record, render_paragraph, title_from_url, url_for_title
from data_gen.store import SimulatedCrash, Store, ingest


def kilt_page(wiki_id, title, body, links=(), tail=None, categories="Things"):
    """A KILT-shaped record: title line, body paragraphs, optional cut tail; links = (paragraph, word, target)."""
    text = [title + "\n"] + [p + "\n" for p in body]
    if tail:
        text += [p + "\n" for p in tail]
    anchors = []
    for pid, word, target in links:
        start = text[pid].index(word)
        anchors.append({"paragraph_id": pid, "start": start, "end": start + len(word), "text": word,
                        "href": target.replace(" ", "%20"), "wikipedia_title": target,
                        "wikipedia_id": str(abs(hash(target)) % 10**6)})
    return {"_id": str(wiki_id), "wikipedia_id": str(wiki_id), "wikipedia_title": title, "text": text,
            "anchors": anchors, "categories": categories, "history": {"pageid": wiki_id}}


def test_see_also_cut_drops_the_tail_and_its_anchors():
    rec = kilt_page(1, "Alpha", ["Alpha knows Beta.", "Section::::Career.", "Alpha met Gamma."],
                    links=[(1, "Beta", "Beta"), (3, "Gamma", "Gamma"), (5, "Delta", "Delta"), (7, "Eps", "Eps")],
                    tail=["Section::::See also.", "BULLET::::- Delta", "Section::::References.", "Eps ref"])
    page = parse_record(rec)
    assert page.cut_at == 4
    assert page.paragraphs[-1] == "Alpha met Gamma."
    assert [a.target_title for a in page.anchors] == ["Beta", "Gamma"]  # Delta and Eps were in the tail
    assert not page.is_disambiguation
    assert "See also" not in page.body_text()
    assert page.meta["history"] == {"pageid": 1}  # unknown fields kept


@pytest.mark.parametrize("heading", ["References", "External links", "Further reading", "Notes", "Bibliography"])
def test_every_cut_section_name_cuts(heading):
    page = parse_record(kilt_page(2, "P", ["Body text here.", f"Section::::{heading}.", "tail"]))
    assert page.paragraphs == ["P", "Body text here."]


def test_subsection_of_a_kept_section_is_not_a_cut():
    page = parse_record(kilt_page(3, "P", ["Body.", "Section::::Career.:Notes on style.", "kept"]))
    assert page.cut_at is None and page.paragraphs[-1] == "kept"
    assert render_paragraph("Section::::Career.:Notes on style.") == "### Notes on style"


@pytest.mark.parametrize("title,categories,body,expected", [
    ("Mercury (disambiguation)", "Things", ["Mercury is many things."], True),
    ("Mercury", "Disambiguation pages,Place name disambiguation pages", ["Mercury is many things."], True),
    ("Mercury", "Things", ["Mercury may refer to:"], True),
    ("Mercury", "Planets", ["Mercury is the smallest planet."], False),
])
def test_disambiguation_flags(title, categories, body, expected):
    assert parse_record(kilt_page(4, title, body, categories=categories)).is_disambiguation is expected


@pytest.mark.parametrize("record,field", [
    ({"wikipedia_id": "1", "text": ["x\n"]}, "wikipedia_title"),
    ({"wikipedia_title": "T", "wikipedia_id": "1", "text": "not a list"}, "text"),
    ({"wikipedia_title": "T", "text": ["T\n"]}, "wikipedia_id"),
    ({"wikipedia_title": "T", "wikipedia_id": "1", "text": ["T\n"], "anchors": [{"paragraph_id": 9}]}, "paragraph_id"),
    ([1, 2], "JSON object"),
])
def test_bad_records_name_the_field(record, field):
    with pytest.raises(KiltFormatError, match=field):
        parse_record(record)


def test_urls_round_trip_titles():
    url = url_for_title("AC/DC (band)")
    assert url.startswith("https://en.wikipedia.org/wiki/AC/DC_(band)")
    assert title_from_url(url) == "AC/DC (band)"
    assert title_from_url("https://en.m.wikipedia.org/wiki/Caf%C3%A9_society#History") == "Café society"
    assert title_from_url("https://example.com/x") is None


def _chain_records(n):
    """n pages in a ring, each linking to the next three (so every page has 3 outgoing links)."""
    recs = []
    for i in range(n):
        targets = [f"Page {(i + k) % n}" for k in (1, 2, 3)]
        body = [f"Page {i} links to " + ", ".join(targets) + "."]
        recs.append(kilt_page(1000 + i, f"Page {i}", body, links=[(1, t, t) for t in targets]))
    return recs


def _dump(conn_path):
    conn = sqlite3.connect(conn_path)
    pages = conn.execute("SELECT wiki_id, title, paragraphs, n_out FROM pages ORDER BY wiki_id").fetchall()
    links = conn.execute("SELECT p.wiki_id, l.anchor, l.dst FROM links l JOIN pages p ON p.pid = l.src "
                         "ORDER BY p.wiki_id, l.rowid").fetchall()
    conn.close()
    return pages, links


def test_ingest_rejects_bad_lines_with_line_numbers(tmp_path):
    recs = _chain_records(6)
    lines = [json.dumps(r) for r in recs]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"wikipedia_title": "No id", "text": ["x\n"]}))
    lines.append(json.dumps(recs[0]))  # duplicate wikipedia_id
    src = tmp_path / "kilt.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary = ingest(src, tmp_path / "s.db", tmp_path / "rej.jsonl", batch_size=3)
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [3, 5, 9]
    assert "not valid JSON" in rejects[0]["error"]
    assert "wikipedia_id" in rejects[1]["error"]
    assert "duplicate wikipedia_id" in rejects[2]["error"]
    assert summary.rejects == 3
    store = Store(tmp_path / "s.db")
    assert store.stats()["pages"] == 6 and store.stats()["resolved_links"] == 18
    assert store.page_by_title("page 3").title == "Page 3"  # first-letter case-insensitive lookup


def test_ingest_resumes_after_a_crash_without_duplicates(tmp_path):
    recs = _chain_records(40)
    src = tmp_path / "kilt.jsonl"
    lines = [json.dumps(r) for r in recs]
    lines.insert(10, "garbage line")
    src.write_text("\n".join(lines) + "\n")
    clean = tmp_path / "clean.db"
    ingest(src, clean, tmp_path / "clean.rej.jsonl", batch_size=7)

    crashed = tmp_path / "crashed.db"
    with pytest.raises(SimulatedCrash):
        ingest(src, crashed, tmp_path / "c.rej.jsonl", batch_size=7, crash_after_batches=3)
    partial = sqlite3.connect(crashed).execute("SELECT count(*) FROM pages").fetchone()[0]
    assert 0 < partial < 40
    with pytest.raises(Exception, match="not finalized"):
        Store(crashed)
    summary = ingest(src, crashed, tmp_path / "c.rej.jsonl", batch_size=7)
    assert summary.resumed_from_line == 21 and summary.pages == 40 - partial
    assert _dump(crashed) == _dump(clean)  # same pages, same links, no duplicates
    rejects = [json.loads(x) for x in (tmp_path / "c.rej.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [11]  # the reject found before the crash is kept, once
    again = ingest(src, crashed, tmp_path / "c.rej.jsonl")
    assert again.finalized and again.pages == 40  # already finalized: nothing re-read


def test_ingest_refuses_another_source_file(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for p in (a, b):
        p.write_text(json.dumps(_chain_records(4)[0]) + "\n")
    with pytest.raises(SimulatedCrash):
        ingest(a, tmp_path / "s.db", batch_size=1, crash_after_batches=1)
    with pytest.raises(Exception, match="was built from"):
        ingest(b, tmp_path / "s.db")


def test_parallel_parsing_gives_the_same_store(tmp_path):
    src = tmp_path / "kilt.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in _chain_records(30)) + "\n")
    ingest(src, tmp_path / "one.db", batch_size=4, workers=1)
    ingest(src, tmp_path / "two.db", batch_size=4, workers=2)
    assert _dump(tmp_path / "one.db") == _dump(tmp_path / "two.db")


def test_redirect_names_in_hrefs_become_aliases(tmp_path):
    a = kilt_page(1, "Alpha", ["Alpha cites Old Beta."], links=[(1, "Old Beta", "Beta")])
    a["anchors"][0]["href"] = "Old%20Beta"
    b = kilt_page(2, "Beta", ["Beta is a page."])
    a["anchors"][0]["wikipedia_id"] = "2"
    src = tmp_path / "k.jsonl"
    src.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    ingest(src, tmp_path / "s.db")
    store = Store(tmp_path / "s.db")
    assert store.resolve_title("Old Beta") == store.resolve_title("Beta")
    assert store.resolve_url("https://en.wikipedia.org/wiki/Old_Beta") == store.resolve_title("Beta")


# ------------------------------------------------------------------------------------------------------------
# Real records of kilt_knowledgesource.json (tests/fixtures/kilt/PROVENANCE.md): pages 290 "A" (whole),
# 25 "Autism" (first 7 paragraphs) and 5141410 "Origin of the domestic dog" (first 12 paragraphs).
# The expected numbers below were counted by hand in the fixture file, not computed with the reader.
FIXTURE = Path(__file__).parent / "fixtures" / "kilt" / "kilt_excerpt.jsonl"


def _real_records():
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_real_records_parse_with_hand_counted_shapes():
    a, autism, dog = (parse_record(r) for r in _real_records())
    assert [(p.wiki_id, p.title) for p in (a, autism, dog)] == [
        ("290", "A"), ("25", "Autism"), ("5141410", "Origin of the domestic dog")]
    # "A": 69 paragraphs, the last two are "Section::::External links." and one bullet -> cut at 67
    assert a.cut_at == 67 and len(a.paragraphs) == 67 and a.paragraphs[0] == "A"
    assert sum(p.startswith("Section::::") for p in a.paragraphs) == 11  # 12 headings in the record
    assert sum(p.startswith("BULLET::::") for p in a.paragraphs) == 35  # 36 bullets in the record
    assert "History of the Alphabet" not in a.body_text() and "External links" not in a.body_text()
    assert (autism.cut_at, len(autism.paragraphs), dog.cut_at, len(dog.paragraphs)) == (None, 7, None, 12)
    # anchors: 146 / 28 / 57, none of A's is in its cut tail (the last anchored paragraph is 66)
    assert [len(p.anchors) for p in (a, autism, dog)] == [146, 28, 57]
    assert a.categories == ["ISO basic Latin letters"] and dog.categories == ["Origins", "Dogs"]
    assert len(autism.categories) == 8 and "Articles containing video clips" in autism.categories
    assert not any(p.is_disambiguation for p in (a, autism, dog))
    assert a.meta["history"]["revid"] == 907008348 and a.meta["wikidata_info"] == {"wikidata_id": "Q9659"}
    assert render_paragraph(a.paragraphs[38]) == "### Descendants and related characters in the Latin alphabet"
    assert render_paragraph(dog.paragraphs[10]) == "### Time of genetic divergence"
    assert render_paragraph(a.paragraphs[16]) == '- the near-open front unrounded vowel as in "pad";'


def test_real_anchor_offsets_index_the_cleaned_paragraphs():
    for page in (parse_record(r) for r in _real_records()):
        for anchor in page.anchors:  # the trailing "\n" that the reader strips never shifts an offset
            assert page.paragraphs[anchor.paragraph_id][anchor.start:anchor.end] == anchor.text


def test_real_hrefs_lose_their_section_fragment():
    a, _, dog = (parse_record(r) for r in _real_records())
    by_text = {(x.paragraph_id, x.text): x.target_title for x in a.anchors + dog.anchors}
    assert by_text[(1, "named")] == "English alphabet"  # href English%20alphabet%23Letter%20names
    assert by_text[(1, "Ancient Greek letter")] == "Greek alphabet"  # href Greek_alphabet%23History
    assert by_text[(2, "indefinite article")] == "Article (grammar)"
    assert by_text[(1, "vowel")] == "Vowel"  # href "vowel": first letter capitalised
    assert by_text[(9, "commensal pathway")] == "Domestication of animals"
    # "%23Bonn%E2%80%93Oberkassel%20dog" (paragraphs 2 and 9) is a link into the page itself
    assert [(x.paragraph_id, x.target_title) for x in dog.anchors if x.text == "Bonn–Oberkassel dog"] == [
        (2, "Origin of the domestic dog"), (9, "Origin of the domestic dog")]
    assert not any("#" in x.target_title for x in a.anchors + dog.anchors)
    assert [x.target_title for x in a.anchors if x.text == "ẚ"] == ["ẚ"]  # not "Aʾ" (str.upper of "ẚ")
    assert render_paragraph("BULLET::::2. \"Do You Know What I Mean\" – 3:45").startswith("2. ")


def test_real_excerpt_ingests_and_resolves_links_by_hand_count(tmp_path):
    records = _real_records()
    # real records also carry the resolved target per anchor; for A's first anchor KILT has
    # wikipedia_title "English alphabet", wikipedia_id "378194" (see PROVENANCE.md)
    records[0]["anchors"][0].update(wikipedia_title="English alphabet", wikipedia_id="378194")
    stubs = [kilt_page(wid, title, [f"{title} stub."]) for wid, title in [
        (378194, "English alphabet"), (9001, "Greek alphabet"), (9002, "Article (grammar)"),
        (9003, "Grey wolf"), (9004, "Domestication of animals")]]
    src = tmp_path / "kilt.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records + stubs), encoding="utf-8")
    summary = ingest(src, tmp_path / "s.db", tmp_path / "rej.jsonl")
    assert summary.rejects == 0
    store = Store(tmp_path / "s.db")
    # A -> English alphabet x2, Greek alphabet x3, Article (grammar) x2; the dog page -> Grey wolf x2,
    # Domestication of animals x3 and itself x2 ("#Bonn–Oberkassel dog"); Autism -> none of these pages
    assert store.stats() == {"pages": 8, "disambiguation_pages": 0, "links": 146 + 28 + 57,
                             "resolved_links": 14, "aliases": 0, "walkable_pages": 0}
    assert store.page_by_title("A").n_out == 3 and store.page_by_title("Autism").n_out == 0
    assert store.page_by_title("Origin of the domestic dog").n_out == 2  # the self-links do not count
    assert store.resolve_title("English alphabet#Letter names") is None  # no fragment alias
    assert store.page_by_title("origin of the domestic dog").url.endswith("/Origin_of_the_domestic_dog")
