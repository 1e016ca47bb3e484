"""training.doc2query / training.roundtrip: questions for passages, resumable, round-trip filtered.

A scripted generator stands in for the LM in the pipeline tests (so which questions are kept is
known); the real ``QuestionGenerator`` runs on the tiny random Llama of conftest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from training import doc2query as D
from training import roundtrip as R
from training import testing as T
from training.config import TrainConfig
from training.data import TripleData, stage_data
from training.errors import TrainingError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

# (source, unit, passage, scripted question): each passage has its own rare words.
PASSAGES = [
    ("sections:cookbook", "cookbook:a.html", "How to bake sourdough bread with a starter and flour.", "How do I bake sourdough bread?"),
    ("sections:cookbook", "cookbook:a.html", "Whisk eggs and sugar for a sponge cake, then fold the flour.", "How do I make a sponge cake?"),
    ("sections:cookbook", "cookbook:b.html", "Pickling cucumbers needs vinegar, salt and dill in a clean jar.", "What do I need for pickling cucumbers?"),
    ("sections:cookbook", "cookbook:c.html", "Roast the coffee beans until they crack, then cool them fast.", "What is the weather on Mars?"),
    ("code:toolkit", "toolkit:t.py:1", "def rotate_log(path, size):\n    if getsize(path) > size:\n        rename(path)", "How to rotate a log file by size?"),
    ("code:toolkit", "toolkit:t.py:9", "def parse_cookie(header):\n    return dict(p.split('=') for p in header.split(';'))", "Here is a summary of it."),
    ("code:toolkit", "toolkit:u.py:3", "class Matrix:\n    def transpose(self):\n        return Matrix(zip(*self.rows))", "How do I transpose a matrix?"),
    ("manopt:curl", "man:curl.1", "--retry num\nRetry a transfer num times when a transient error happens.", "How many times does curl retry a transfer?"),
    ("manopt:rsync", "man:rsync.1", "--delete\nDelete extraneous files from the receiving side before the transfer.", "How do I delete extraneous files on the receiving side?"),
]  # fmt: skip


def _qdata(tmp_path: Path, extra_val: bool = True, manifest: bool = True) -> Path:
    rows = [
        {"query": "orig", "positive": p, "source": s, "unit": u, "package": s.split(":")[1], "split": "train"}
        for s, u, p, _q in PASSAGES
    ]  # fmt: skip
    if extra_val:
        rows.append({"query": "v", "positive": "A val passage about sourdough bread baking.", "source": "sections:cookbook", "unit": "cookbook:v.html", "package": "cookbook", "split": "val"})  # fmt: skip
    rows.append(dict(rows[0]))  # a duplicate positive is read once
    path = T.write_jsonl(tmp_path / "qdata" / "qdata.jsonl", rows)
    if manifest:
        sources = [
            {"kind": s.split(":")[0], "name": s.split(":")[1], "version": "1.0"}
            for s, *_ in PASSAGES
        ]
        sources.append({"kind": "sections", "name": "unused-doc", "version": "9"})
        (path.parent / "manifest.json").write_text(json.dumps({"builder": "training.qdata", "sources": sources}))  # fmt: skip
    return path


class Scripted:
    """A stand-in generator: the scripted question of each passage, with a 'Question:' echo."""

    def __init__(self, **settings):
        self.settings = {"model": "scripted", **settings}
        self.calls: list[str] = []
        self.answers = {p: q for _s, _u, p, q in PASSAGES}

    def generate(self, passages, seed=0):
        self.calls += passages
        return [f" {self.answers[p]}\nmore text" for p in passages]


def _run(tmp_path, gen=None, **kw):
    kw.setdefault("tasks_dir", tmp_path / "no-tasks")
    return D.run(_qdata(tmp_path), tmp_path / "out", generator=gen or Scripted(), **kw)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ---------------------------------------------------------------------------- post-processing


@pytest.mark.parametrize(
    "raw,passage,want",
    [
        (" How do I rotate logs by size?", "", ("How do I rotate logs by size?", "ok")),
        ("Question: What does --retry do?\nAnswer: it retries", "", ("What does --retry do?", "ok")),
        ('"Which flag deletes extraneous files?" and why?', "", ("Which flag deletes extraneous files?", "ok")),
        ("\n\n How is it built? What else?", "", ("How is it built?", "ok")),
        ("Describe the rotate handler", "", (None, "no_question_mark")),
        ("   ", "", (None, "empty")),
        ("Why?", "", (None, "too_short")),
        ("What " + "very " * 30 + "long?", "", (None, "too_long")),
        ("What does the text say about logging?", "", (None, "meta")),
        ("What a great question! Is it?", "", (None, "meta")),
        ("What -v -v -v -v does?", "", (None, "repetitive")),
        ("Retry a transfer num times?", "Retry a transfer num times when an error happens.", (None, "copied")),
        ("Retry a transfer num times when?", "Never retry.", ("Retry a transfer num times when?", "ok")),
    ],
)  # fmt: skip
def test_post_processing_rules(raw, passage, want):
    assert D.clean_question(raw, passage) == want


# ---------------------------------------------------------------------------- passages


def test_passages_are_distinct_train_rows_and_the_sample_mixes_kinds(tmp_path):
    rows = D.load_passages(_qdata(tmp_path))
    assert len(rows) == len(PASSAGES)  # val row and duplicate dropped
    assert all("val passage" not in r["positive"] for r in rows)
    order = D.sample_passages(rows, None, seed=1)
    assert [R.kind_of(r["source"]) for r in order[:3]] == ["code", "manopt", "sections"]
    assert D.sample_passages(rows, 4, seed=1) == order[:4]  # a larger limit extends a smaller one
    assert D.sample_passages(rows, None, seed=2) != order


# ---------------------------------------------------------------------------- the round-trip filter


def test_filter_keeps_exactly_the_pairs_whose_passage_is_in_bm25_top_k():
    docs = [
        "kiwi mango smoothie recipe",  # 0: the only one with kiwi/mango
        "lemon tart with lemon curd and lemon zest",  # 1
        "lemon lemonade lemon sorbet lemon",  # 2
        "plum plum plum jam",  # 3: plum, more often
        "plum cake with almonds",  # 4: plum, once
        "grape juice",  # 5
    ]
    questions = ["kiwi mango", "lemon", "plum", "almonds", "banana", "the of"]
    targets = [0, 5, 4, 4, 0, 1]
    assert R.bm25_ranks(questions, targets, docs, k=1) == [0, None, None, 0, None, None]
    assert R.bm25_ranks(questions, targets, docs, k=3) == [0, None, 1, 0, None, None]
    pools = {"sections:x": [{"positive": d, "source": "sections:x"} for d in docs]}
    rows = [
        {"id": str(i), "question": q, "reason": "ok", "positive": docs[t], "source": "sections:x"}
        for i, (q, t) in enumerate(zip(questions, targets))
    ]
    rows.append({"id": "n", "question": None, "reason": "too_short", "positive": docs[3], "source": "sections:x"})  # fmt: skip
    judged = R.judge(rows, pools, k=3)
    assert [r["id"] for r in judged if r["kept"]] == ["0", "2", "3"]
    assert [r["reason"] for r in judged] == ["ok", "bm25_not_top3", "ok", "ok", "bm25_not_top3", "bm25_not_top3", "too_short"]  # fmt: skip


def test_a_question_generated_for_two_passages_is_dropped():
    docs = ["kiwi mango smoothie", "kiwi mango salad"]
    pools = {"s": [{"positive": d, "source": "s"} for d in docs]}
    rows = [
        {"id": str(i), "question": "What about kiwi mango?", "reason": "ok", "positive": d, "source": "s"}
        for i, d in enumerate(docs)
    ]  # fmt: skip
    assert {r["reason"] for r in R.judge(rows, pools, k=3)} == {"repeated"}


# ---------------------------------------------------------------------------- the pipeline


def test_outputs_load_as_scl_triples_with_same_pool_negatives(tmp_path):
    m = _run(tmp_path)
    out = tmp_path / "out"
    judged = {r["question"]: r for r in _jsonl(out / D.JUDGED)}
    assert len(judged) == len(PASSAGES)
    assert judged["What is the weather on Mars?"]["reason"] == "bm25_not_top3"
    assert judged[None]["reason"] == "no_question_mark"  # "Here is a summary of it."
    scl = _jsonl(out / D.SCL)
    assert {r["query"] for r in scl} == {r["question"] for r in judged.values() if r["kept"]}
    assert len(scl) == 7 and m["files"][D.SCL]["records"] == 7
    by_text = {p: (s, u) for s, u, p, _q in PASSAGES}
    for r in scl:
        src, unit = by_text[r["positive"]]
        assert r["source"] == f"d2q:{src}" and r["unit"] == unit and r["split"] == "train"
        neg_src, neg_unit = by_text[r["negative"]]
        assert R.pool_of(neg_src) == R.pool_of(src) and neg_unit != unit  # same pool, other unit
    cfg = TrainConfig(stage="scl")
    words = lambda texts: [[hash(w) % 1000 for w in t.split()] for t in texts]  # noqa: E731
    cfg.data.train = [str(out / D.SCL)]
    data = stage_data(cfg, words)
    assert isinstance(data, TripleData) and len(data) == 7
    assert len(data.batch_at(0, 2).documents) == 4  # positives + one hard negative each
    cfg.data.train = [{"path": str(out / D.SCL), "sources": ["d2q:code"]}]
    assert len(stage_data(cfg, words)) == 2


def test_manifest_records_sources_counts_and_digests(tmp_path):
    m = _run(tmp_path)
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text()) == m
    assert {s["name"] for s in m["sources"]} == {"cookbook", "toolkit", "curl", "rsync"}
    assert m["passages"]["sha256"] == hashlib.sha256((tmp_path / "qdata" / "qdata.jsonl").read_bytes()).hexdigest()  # fmt: skip
    for name in (D.SCL, D.JUDGED, D.RAW):
        assert m["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert m["counts"]["by_kind"]["sections"] == {"passages": 4, "questions": 4, "kept": 3, "keep_rate": 0.75}  # fmt: skip
    assert m["counts"]["by_kind"]["code"]["questions"] == 2
    assert m["filter"]["k"] == 3 and m["filter"]["pools"]["manopt"] == 2  # man options: one pool
    assert m["generator"]["model"] == "scripted" and m["split_check"]["leaks"] == 0
    assert m["runs"][0]["generated"] == len(PASSAGES)


def test_a_rerun_skips_done_passages_and_survives_a_torn_line(tmp_path):
    first = Scripted()
    _run(tmp_path, first, limit=4, batch_size=3)
    assert len(first.calls) == 4
    raw = tmp_path / "out" / D.RAW
    with open(raw, "a") as f:
        f.write('{"id": "half a line')  # a run killed mid-write
    second = Scripted()
    m = _run(tmp_path, second, limit=6, batch_size=3)
    assert len(second.calls) == 2 and not set(second.calls) & set(first.calls)
    assert len(_jsonl(raw)) == 6 and m["runs"][-1]["generated"] == 2 and len(m["runs"]) == 2
    third = Scripted()
    _run(tmp_path, third, limit=6)
    assert third.calls == []


def test_max_minutes_stops_after_the_current_batch_and_a_rerun_continues(tmp_path):
    m = _run(tmp_path, limit=6, batch_size=2, max_minutes=0)
    assert m["runs"][-1]["stopped_by_max_minutes"] and m["runs"][-1]["generated"] == 0
    m = _run(tmp_path, limit=6, batch_size=2)
    assert m["runs"][-1]["generated"] == 6 and m["runs"][-1]["remaining"] == 0


def test_other_settings_are_refused_in_the_same_folder(tmp_path):
    _run(tmp_path, limit=2)
    with pytest.raises(TrainingError, match="other settings.*prompt"):
        _run(tmp_path, Scripted(prompt="something else"), limit=2)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--passages", "{tmp}/missing.jsonl"], "passages not found"),
        (["--passages", "{qdata}", "--limit", "0"], "--limit must be a positive"),
        (["--passages", "{qdata}", "--kinds", "wiki"], "unknown kinds"),
        (["--passages", "{qdata}", "--model", "{tmp}/nomodel"], "model not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, msg):
    qdata = _qdata(tmp_path)
    args = [a.format(tmp=tmp_path, qdata=qdata) for a in args]
    assert D.main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err


def test_empty_passages_file_is_refused(tmp_path):
    path = T.write_jsonl(tmp_path / "q.jsonl", [{"positive": "x", "source": "wiki:a", "unit": "u", "split": "train"}])  # fmt: skip
    with pytest.raises(TrainingError, match="no train passages"):
        D.run(path, tmp_path / "out", generator=Scripted())


# ---------------------------------------------------------------------------- the real generator, tiny model


def test_generator_batches_left_padded_and_truncates_passages(tiny_base):
    gen = D.QuestionGenerator(
        str(tiny_base), dtype="float32", max_passage_tokens=6, max_new_tokens=5
    )
    long = "search index query file chunk vector model token memory encoder python json"
    assert gen.prompt(long) == gen.prompt(long + " log rotate size parse")  # cut at 6 tokens
    assert "search index query file chunk vector" in gen.prompt(long)
    passages = ["log rotate size", long, "http request header cookie"]
    together = gen.generate(passages)
    alone = [gen.generate([p])[0] for p in passages]
    assert len(together) == 3 and all(isinstance(t, str) for t in together)
    assert together == alone  # left padding does not change a row's greedy output
    assert gen.settings["decoding"] == "greedy" and gen.settings["fingerprint"]


def test_a_row_stops_at_its_first_question_mark_or_line_break():
    import torch

    class Tok:
        texts = [" How is it built?", " How is", " First line\n", ""]

        def batch_decode(self, ids, skip_special_tokens=True):
            assert ids.shape[1] == 2  # only the new tokens, after the prompt
            return self.texts

    stop = D.stop_at_question(Tok(), start=3)
    done = stop(torch.zeros(4, 5, dtype=torch.long), None)
    assert done.tolist() == [True, False, True, False]


def test_cpu_d2q_arms_see_the_same_items_of_each_kind(tmp_path, monkeypatch):
    from training.config import load_config
    from training.errors import TrainingError

    data = tmp_path / "data"
    monkeypatch.setenv("COMPSEARCH_TRAIN_DATA", str(data))
    monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COMPSEARCH_D2Q_ARM", "d2q")
    with pytest.raises(TrainingError, match="run python -m training.doc2query first"):
        load_config("cpu-d2q", "scl")
    (data / "doc2query").mkdir(parents=True)
    rows = [{"source": "d2q:sections"}] * 3 + [{"source": "d2q:code:numpy"}] * 2
    (data / "doc2query" / "doc2query-scl.jsonl").write_text(
        "".join(json.dumps({"query": "q?", "positive": "p", **r}) + "\n" for r in rows)
    )
    d2q = load_config("cpu-d2q", "scl")
    assert d2q.data.train == [{"path": "doc2query/doc2query-scl.jsonl"}]
    assert d2q.model.init_from == "default" and d2q.model.num_layers == 8
    monkeypatch.setenv("COMPSEARCH_D2Q_ARM", "real")
    real = load_config("cpu-d2q", "scl")
    assert real.data.train == [
        {"path": "qdata/qdata-scl.jsonl", "sources": ["sections"], "sample": 3},
        {"path": "qdata/qdata-scl.jsonl", "sources": ["code"], "sample": 2},
    ]
    assert (real.seed, real.optim.max_steps, real.optim.lr) == (
        d2q.seed,
        d2q.optim.max_steps,
        d2q.optim.lr,
    )
    assert real.run_dir != d2q.run_dir and real.run_dir.parent == d2q.run_dir.parent
    monkeypatch.setenv("COMPSEARCH_D2Q_ARM", "both")
    with pytest.raises(TrainingError, match="set it to d2q or real"):
        load_config("cpu-d2q", "scl")
