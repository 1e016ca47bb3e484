"""Training data, configs, builders, mining, synthetic queries and diagnostics (no training)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import WORDS
from training import testing as T
from training.config import TrainConfig, load_config, parse_overrides
from training.data import TokenStore, TripleData, stage_data
from training.errors import TrainingError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _words_tokenize(texts):
    """A stand-in tokenizer: one id per whitespace word."""
    return [[hash(w) % 1000 for w in t.split()] for t in texts]


def _cfg(stage, files, **data):
    cfg = TrainConfig(stage=stage)
    cfg.data.train = [str(f) for f in files]
    cfg.data.min_side_tokens = 3
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


# ---------------------------------------------------------------------------- reading and validation


def test_malformed_jsonl_is_reported_with_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "one two three four five six seven"}\n\n{"text": "broken\n[1, 2]\n')
    with pytest.raises(TrainingError, match=r"bad\.jsonl:3: malformed JSONL"):
        stage_data(_cfg("ctkd", [f]), _words_tokenize)
    data = stage_data(_cfg("ctkd", [f], on_malformed="skip"), _words_tokenize)
    rec = data.provenance()[0]
    assert (
        rec["skipped"]["malformed"] == 2 and rec["used"] == 1
    )  # line 3 (bad JSON), line 4 (not an object)


def test_empty_and_short_texts_are_skipped_and_counted(tmp_path):
    f = T.write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"text": "one two three four five six seven eight"},
            {"text": "   "},
            {"text": ""},
            {"text": "tiny"},
            {"other": "no text field"},
            {"text": 42},
            {"text": "a b c d e"},
            {"text": " ".join(["w"] * 100)},
        ],
    )
    cfg = _cfg("ctkd", [f], min_chars=5)
    cfg.model.max_length = 50
    data = stage_data(cfg, _words_tokenize)
    rec = data.provenance()[0]
    assert rec["read"] == 8 and rec["used"] == 2 and rec["truncated"] == 1
    assert rec["skipped"] == {
        "empty": 2,
        "short": 1,
        "missing_field": 1,
        "not_text": 1,
        "too_few_tokens": 1,
    }
    assert rec["files"][0]["sha256"] and len(data) == 2


def test_a_source_can_be_sampled_to_a_fixed_count(tmp_path):
    many = T.write_jsonl(
        tmp_path / "many.jsonl",
        [{"text": f"real passage number {i} with some words"} for i in range(50)],
    )
    few = T.write_jsonl(
        tmp_path / "few.jsonl",
        [{"text": f"synthetic passage {i} with more words"} for i in range(5)],
    )
    cfg = _cfg("ucl", [])
    cfg.data.train = [str(few), {"path": str(many), "sample": 5}]
    data = stage_data(cfg, _words_tokenize)
    few_rec, many_rec = data.provenance()
    assert (
        len(data) == 10
        and many_rec["read"] == 50
        and many_rec["used"] == 5
        and many_rec["not_sampled"] == 45
    )
    assert many_rec["spec"] == {"path": str(many), "sample": 5} and "not_sampled" not in few_rec
    again = stage_data(cfg, _words_tokenize)
    assert [again.store[i] for i in range(10)] == [data.store[i] for i in range(10)]  # seeded
    cfg.data.train = [{"path": str(many), "sample": 0}]
    with pytest.raises(TrainingError, match="sample"):
        stage_data(cfg, _words_tokenize)


def test_a_mix_selects_sources_before_sampling(tmp_path):
    rows = [
        {"text": f"{kind} passage number {i} with some words", "source": src}
        for i in range(20)
        for kind, src in (("code", "code:numpy"), ("section", "sections"), ("word", "wordnet"))
    ]
    rows.append({"text": "a passage whose source only starts like code", "source": "codex"})
    f = T.write_jsonl(tmp_path / "mixed.jsonl", rows)
    cfg = _cfg("ucl", [])
    cfg.data.train = [
        {"path": str(f), "sources": ["code"], "sample": 4},
        {"path": str(f), "sources": ["sections", "wordnet"]},
    ]
    data = stage_data(cfg, _words_tokenize)
    code, rest = data.provenance()
    assert code["used"] == 4 and code["not_selected"] == 41 and code["not_sampled"] == 16
    assert rest["used"] == 40 and rest["not_selected"] == 21 and "not_sampled" not in rest
    texts = [" ".join(map(str, data.store[i])) for i in range(len(data))]
    assert len(texts) == 44
    for bad in ([], "code", [""], [3]):
        cfg.data.train = [{"path": str(f), "sources": bad}]
        with pytest.raises(TrainingError, match="'sources'"):
            stage_data(cfg, _words_tokenize)


def test_wrong_field_name_and_nothing_usable_are_clear_errors(tmp_path):
    f = T.write_jsonl(tmp_path / "q.jsonl", [{"body": "one two three four five six seven"}] * 3)
    with pytest.raises(TrainingError, match="no record has the field"):
        stage_data(_cfg("ctkd", [f]), _words_tokenize)
    g = T.write_jsonl(tmp_path / "g.jsonl", [{"text": ""}])
    with pytest.raises(TrainingError, match="no usable training records"):
        stage_data(_cfg("ctkd", [g]), _words_tokenize)
    with pytest.raises(TrainingError, match="not found"):
        stage_data(_cfg("ctkd", [tmp_path / "missing.jsonl"]), _words_tokenize)


def test_text_and_parquet_files_through_datasets(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    txt = tmp_path / "s.txt"
    txt.write_text("alpha beta gamma delta\n\nepsilon zeta eta theta iota\n")
    pq.write_table(
        pa.table({"query": ["q one"], "positive": ["the positive doc"], "negative": [["neg doc"]]}),
        tmp_path / "t.parquet",
    )
    cfg = _cfg("ucl", [txt], hf_cache_dir=str(tmp_path / "hf"), min_tokens=2)
    assert len(stage_data(cfg, _words_tokenize)) == 2
    cfg = _cfg("scl", [tmp_path / "t.parquet"], hf_cache_dir=str(tmp_path / "hf"))
    data = stage_data(cfg, _words_tokenize)
    assert isinstance(data, TripleData) and len(data) == 1
    batch = data.batch_at(0, 1)
    assert len(batch.documents) == 2  # positive + one hard negative


def test_scl_queries_get_the_instruction_and_triples_line_up(tmp_path):
    f = T.write_jsonl(
        tmp_path / "t.jsonl",
        [
            {
                "query": f"q{i}",
                "positive": f"pos {i}",
                "negative": [f"neg {i}", "x"],
                "instruction": "Own",
            }
            for i in range(5)
        ]
        + [{"query": "q", "positive": "p"}],
    )
    seen = []

    def tok(texts):
        seen.extend(texts)
        return _words_tokenize(texts)

    cfg = _cfg("scl", [f], num_hard_negatives=2, query_prompt="Find")
    data = stage_data(cfg, tok)
    assert "Find: q0\n" in seen and data.provenance()[0]["skipped"]["too_few_negatives"] == 1
    b = data.make_batch([(3, 0), (1, 0)])
    assert b.queries[0] == _words_tokenize(["Find: q3\n"])[0]
    assert b.documents == _words_tokenize(["pos 3", "pos 1", "neg 3", "x", "neg 1", "x"])
    cfg = _cfg("scl", [f], num_hard_negatives=1, use_record_instructions=True)
    seen.clear()
    stage_data(cfg, tok)
    assert "Own: q0\n" in seen


def test_order_and_split_points_are_pure_functions_of_seed_and_position(tmp_path):
    f = T.write_jsonl(tmp_path / "p.jsonl", [{"text": t} for t in T.word_texts(WORDS, 10, 8, 30)])
    a = stage_data(_cfg("ctkd", [f]), _words_tokenize)
    b = stage_data(_cfg("ctkd", [f]), _words_tokenize)
    seq = [a.item_at(p) for p in range(25)]
    assert seq == [b.item_at(p) for p in reversed(range(25))][::-1]  # any access order
    assert sorted(i for i, _ in seq[:10]) == list(range(10))  # each epoch is a permutation
    assert [i for i, _ in seq[:10]] != [i for i, _ in seq[10:20]]
    for p in range(25):
        x, y = a.batch_at(p, 3), b.batch_at(p, 3)
        assert x.context == y.context and x.target == y.target
        for c, t in zip(x.context, x.target):
            assert len(c) >= 3 and len(t) >= 3
    other = _cfg("ctkd", [f])
    other.seed = 99
    assert [stage_data(other, _words_tokenize).item_at(p) for p in range(10)] != seq[:10]


def test_token_store_roundtrip():
    s = TokenStore()
    rows = [[1, 2, 3], [], [7] * 5]
    for r in rows:
        s.add(r)
    assert [s[i] for i in range(3)] == rows
    s.add([9])
    assert s[3] == [9] and len(s) == 4 and s.length(2) == 5


# ---------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["cpu-small", "cpu-quick", "cpu-2h", "gpu-small", "paper"])
@pytest.mark.parametrize("stage", ["ctkd", "nll", "rc", "ucl", "scl"])
def test_shipped_configs_load(name, stage):
    cfg = load_config(name, stage)
    assert cfg.stage == stage and cfg.model.lora_r == 16 and cfg.model.lora_alpha == 32
    assert cfg.model.lora_targets == [
        "q_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    if stage in ("ucl", "scl"):
        assert cfg.temperature == 0.05 and cfg.model.init_from
    if name == "paper":
        assert cfg.model.base == "meta-llama/Llama-2-7b-hf"
        want = {"ctkd": (4, 1e-4, 2.0), "ucl": (128, 3e-5, 1.0), "scl": (1024, 1e-4, 1.0)}.get(
            stage
        )
        if want:
            assert (cfg.optim.batch_size, cfg.optim.lr, cfg.optim.grad_clip) == want
        assert cfg.accumulation(8 if stage == "scl" else 1) == 1


def test_overrides_are_typed_and_checked(tmp_path):
    cfg = load_config(
        "cpu-small",
        "scl",
        parse_overrides(
            [
                "optim.lr=3e-5",
                "optim.max_steps=7",
                'data.train=["a.jsonl","b.jsonl"]',
                "model.init_from=null",
                "name=abl",
                "precision=fp32",
            ]
        ),
    )
    assert (
        cfg.optim.lr == 3e-5
        and cfg.optim.max_steps == 7
        and cfg.data.train == ["a.jsonl", "b.jsonl"]
    )
    assert cfg.model.init_from is None and cfg.run_dir == Path("training/runs/abl/scl")
    with pytest.raises(TrainingError, match="unknown field 'lrr'"):
        load_config("cpu-small", "scl", {"optim.lrr": 1})
    with pytest.raises(TrainingError, match="expects"):
        load_config("cpu-small", "scl", {"optim.max_steps": "many"})
    with pytest.raises(TrainingError, match="precision"):
        load_config("cpu-small", "scl", {"precision": "fp8"})
    with pytest.raises(TrainingError, match="no config"):
        load_config("nope", "scl")
    cfg = load_config("cpu-small", "ctkd", {"optim.batch_size": 8, "optim.micro_batch_size": 3})
    with pytest.raises(TrainingError, match="multiple"):
        cfg.accumulation(1)
    j = tmp_path / "c.json"
    j.write_text(
        json.dumps({"common": {"seed": 5, "optim": {"lr": 0.5}}, "scl": {"optim": {"lr": 0.25}}})
    )
    assert (
        load_config(str(j), "scl").optim.lr == 0.25 and load_config(str(j), "ctkd").optim.lr == 0.5
    )


def test_precision_auto_is_fp32_without_native_bf16():
    import torch

    from compsearch.encoder import pick_dtype
    from training.model import autocast_dtype

    native = pick_dtype(torch.device("cpu"), "auto") == torch.bfloat16
    assert autocast_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if native else None)
    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16


# ---------------------------------------------------------------------------- builders


def _inputs():
    """Parsed-source stand-ins, big enough that every split has both sides."""
    from benchmarks.mteb_suite import parse as P

    rng = random.Random(0)
    long_text = lambda i, n=60: (
        " ".join(rng.choice(WORDS) for _ in range(n)) + f" Item {i} ends here."
    )  # noqa: E731
    src = [
        {
            "registry": "test",
            "name": "fixture",
            "version": "1",
            "pinned": "1",
            "file": "x",
            "sha256": "0",
        }
    ]
    deb = [
        P.DebPackage(
            name=f"pkg{i}",
            source=f"src{i // 2}",
            version="1",
            section="utils",
            short=f"tool number {i} for {rng.choice(WORDS)}",
            long=long_text(i, 200 if i % 3 == 0 else 20),
        )
        for i in range(120)
    ]
    man = [
        P.ManPage(
            unit=f"cmd{i}.1",
            package="p",
            section="1",
            name_line=f"cmd{i} - does {rng.choice(WORDS)} things",
            description=long_text(i, 150),
        )
        for i in range(40)
    ]
    docs = [
        P.DocSection(
            page=f"library/m{i // 3}.html",
            page_title=f"m{i // 3}",
            title=f"Part {i}",
            level=2,
            body=long_text(i, 180),
        )
        for i in range(30)
    ]
    syn = [
        P.Synset(
            offset=f"{i:08d}",
            lexname="noun.act",
            lemmas=[rng.choice(WORDS)],
            definition=long_text(i, 10),
        )
        for i in range(200)
    ]
    brown = [
        P.BrownSample(
            sample=f"c{g}{i:02d}", genre=g, paragraphs=[long_text(i, 80) for _ in range(6)]
        )
        for g in "abc"
        for i in range(5)
    ]
    return {
        "debian": (deb, src),
        "man": (man, src),
        "pydocs": (docs, src),
        "wordnet": (syn, src),
        "brown": (brown, src),
    }


def test_builders_never_use_evaluation_test_units(tmp_path):
    from benchmarks.mteb_suite import builders as B

    from training import builders as TB

    inputs = _inputs()
    manifest = TB.build_from_inputs(inputs, tmp_path / "out", sources=[], min_passage_chars=300)
    files = {
        n: [json.loads(x) for x in (tmp_path / "out" / n).read_text().splitlines()]
        for n in ("ctkd.jsonl", "ucl.jsonl", "scl.jsonl", "heldout.jsonl")
    }
    assert all(files[n] for n in files), {n: len(v) for n, v in files.items()}
    tests = {
        "debian": B.build_debian_retrieval(*inputs["debian"]).units["test"],
        "man": B.build_man_retrieval(*inputs["man"]).units["test"],
        "pydocs": B.build_python_docs_retrieval(*inputs["pydocs"]).units["test"],
        "wordnet": B.build_wordnet_retrieval(*inputs["wordnet"]).units["test"],
        "brown": B.build_brown_classification(*inputs["brown"]).units["test"],
    }
    assert all(tests.values())
    used = {g: set() for g in tests}
    for name, rows in files.items():
        for r in rows:
            g = r["source"]
            if g in tests:
                assert r["unit"] not in tests[g], (name, r["unit"])
                used[g].add(r["unit"])
            assert (name == "heldout.jsonl") == TB.is_heldout(r["unit"])
    assert all(used.values()), used  # every source contributed
    for r in files["scl.jsonl"]:
        assert r["negative"] != r["positive"] and r["query"]
    assert manifest["split"]["check"]["leaks"] == 0
    assert manifest["files"]["scl.jsonl"]["records"] == len(files["scl.jsonl"])
    # the leak check itself can fail
    bad = {"scl.jsonl": [{"source": "debian", "unit": sorted(tests["debian"])[0]}]}
    with pytest.raises(AssertionError, match="evaluation"):
        TB.check_outputs(bad, TB.split_guard(inputs))
    with pytest.raises(AssertionError):
        TB.check_outputs(
            {"ctkd.jsonl": [{"source": "pydocs", "unit": "faq/general.html"}]}, TB.split_guard({})
        )


def test_bm25_negatives_are_lexical_neighbours_from_other_units():
    from training.builders import mine_bm25

    pairs = [
        {
            "query": "rotate log files",
            "positive": "logrotate rotates log files by size",
            "unit": "a",
            "source": "s",
        },
        {
            "query": "compress log archive",
            "positive": "gzip compresses log archives and files",
            "unit": "b",
            "source": "s",
        },
        {
            "query": "parse json text",
            "positive": "a json parser for python text",
            "unit": "c",
            "source": "s",
        },
        {
            "query": "json web token",
            "positive": "json web token library",
            "unit": "c",
            "source": "s",
        },
        {
            "query": "http cookie header",
            "positive": "http cookies and headers for requests",
            "unit": "d",
            "source": "s",
        },
    ]
    rows, stats = mine_bm25(pairs, pool=1)
    by = {r["query"]: r for r in rows}
    assert len(rows) == 5 and stats == {
        "bm25": 2,
        "random": 3,
    }  # no lexical neighbour: a random one
    assert by["rotate log files"]["negative"] == "gzip compresses log archives and files"
    # never the positive, never the same unit (json pair shares unit c)
    assert by["parse json text"]["negative"] != "json web token library"
    for r in rows:
        assert r["negative"] != r["positive"]


def test_model_mined_negatives(tiny_encoder, tmp_path):
    from training.builders import mine_file, mine_with_encoder

    pairs = [
        {"query": q, "positive": p, "unit": f"u{i % 4}", "source": "s"}
        for i, (q, p) in enumerate(
            zip(T.word_texts(WORDS, 8, 2, 4, 1), T.word_texts(WORDS, 8, 6, 12, 2))
        )
    ]
    rows, stats = mine_with_encoder(pairs, tiny_encoder, pool=2, max_ratio=None)
    assert len(rows) == 8 and stats["model"] == 8
    by_unit = {}
    for p in pairs:
        by_unit.setdefault(p["unit"], set()).add(p["positive"])
    for r in rows:
        assert r["negative"] != r["positive"] and r["negative"] not in by_unit[r["unit"]]
        assert r["negative_by"].startswith("encoder:") and 0 <= r["negative_rank"] < 8
    # the CLI path with BM25
    src = T.write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = mine_file(str(src), str(tmp_path / "mined.jsonl"))
    assert out["written"] == 8 and len((tmp_path / "mined.jsonl").read_text().splitlines()) == 8


def test_wikitext_cleaning_and_sentences():
    from training.builders import clean_wikitext, merge_paragraphs, sentences

    wt = (
        "{{Infobox|name=X|{{nested}}}}\n'''Anarchism''' is a [[political philosophy|philosophy]] that "
        "advocates self-governed societies<ref>Cite</ref> based on voluntary institutions, which are often "
        "described as stateless societies by many of its authors and readers.\n\n== History ==\n"
        "[[File:A.jpg|thumb|a [[caption]]]]\n<gallery>\nFile:B.png\n</gallery>\n"
    )
    paras = clean_wikitext(wt)
    assert paras == [
        "Anarchism is a philosophy that advocates self-governed societies based on voluntary "
        "institutions, which are often described as stateless societies by many of its authors "
        "and readers."
    ]
    assert merge_paragraphs(["a" * 30, "b" * 30, "c" * 10], 50, 100) == [
        "a" * 30 + "\n\n" + "b" * 30
    ]
    s = sentences(
        "The first sentence has six words. Second one is also long enough here! Too short."
    )
    assert s == ["The first sentence has six words.", "Second one is also long enough here!"]


# ---------------------------------------------------------------------------- synthetic queries


def test_clean_query():
    from training.synth import clean_query

    p = "The logrotate utility rotates, compresses and mails system logs when they grow too large."
    assert clean_query("Query: how to rotate logs?\nextra", p) == ("how to rotate logs?", "ok")
    assert clean_query('"rotate system logs"', p)[0] == "rotate system logs"
    assert clean_query("logs", p) == (None, "too_short")
    assert clean_query("", p) == (None, "empty")
    assert clean_query("Here is a query for the passage", p)[1] == "meta"
    assert clean_query("What is the text about?", p)[1] == "meta"
    assert clean_query(" What is logrotate for?\n\nAnswer: it rotates logs", p) == (
        "What is logrotate for?",
        "ok",
    )
    assert (
        clean_query("logrotate utility rotates, compresses and mails system logs when", p)[1]
        == "copied"
    )
    assert clean_query(" ".join(["word"] * 30), p)[1] == "too_long"


def test_synthetic_queries_pipeline_on_a_tiny_lm(tiny_base, tmp_path):
    import torch

    from training.synth import QueryGenerator, synthesize

    torch.manual_seed(0)
    gen = QueryGenerator(str(tiny_base), device="cpu", dtype="float32", max_passage_tokens=16)
    recs = [
        {"text": t, "source": "man", "unit": f"u{i}"}
        for i, t in enumerate(T.word_texts(WORDS, 5, 10, 30))
    ]
    raw = gen.generate([r["text"] for r in recs], batch_size=2, max_new_tokens=5)
    assert len(raw) == 5 and all(isinstance(x, str) for x in raw)
    # batching with left padding does not change a greedy output
    assert gen.generate([recs[3]["text"]], batch_size=1, max_new_tokens=5)[0] == raw[3]
    rows, stats = synthesize(recs, gen, batch_size=2, max_new_tokens=5)
    assert sum(stats.values()) == 5 and len(rows) == stats["ok"]
    texts = [x["text"] for x in recs]
    for r in rows:
        assert (
            r["source"] == "synthetic:man" and r["unit"].startswith("u") and r["positive"] in texts
        )


def test_a_query_generated_for_several_passages_is_dropped():
    from collections import Counter

    from training.synth import drop_repeated_queries

    rows = [
        {"query": q, "positive": f"p{i}"}
        for i, q in enumerate(
            [
                "What is the output of the following code?",
                "How do I rotate logs?",
                "what is the output of the following code? ",
                "Which flag lists hidden files?",
            ]
        )
    ]
    stats = Counter(ok=4)
    kept = drop_repeated_queries(rows, stats)
    assert [r["positive"] for r in kept] == ["p1", "p3"] and stats == Counter(ok=2, repeated=2)


# ---------------------------------------------------------------------------- diagnostics


def test_spectrum_effective_dimension_and_memory_correlation(tmp_path):
    from training import diagnostics as D

    rng = np.random.default_rng(0)
    low = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 32))  # rank 3
    full = rng.normal(size=(200, 32))
    s_low, s_full = D.spectrum(low, normalize=False), D.spectrum(full, normalize=False)
    assert s_low["above_1pct"] == 3 and s_full["above_1pct"] == 32
    assert s_low["entropy_rank"] < 3.5 < 25 < s_full["entropy_rank"]
    same = np.repeat(rng.normal(size=(50, 1, 16)), 4, axis=1)  # 4 identical memory tokens
    indep = rng.normal(size=(50, 4, 16))
    assert D.memory_correlation(same)["mean_offdiag"] == pytest.approx(1.0)
    c = D.memory_correlation(indep)
    assert abs(c["mean_offdiag"]) < 0.1 and np.allclose(np.diag(c["matrix"]), 1.0)
    res = D.analyze(indep)
    paths = D.save(res, tmp_path / "d", "test")
    assert (
        Path(paths["spectrum"]).stat().st_size > 1000
        and Path(paths["memory_correlation"]).is_file()
    )
    assert json.loads(Path(paths["json"]).read_text())["memory_correlation"]["k"] == 4


def test_diagnose_cli_on_an_encoder_folder(tiny_base, tmp_path, capsys):
    from compsearch import Encoder

    from training.__main__ import main

    enc = Encoder.from_base(str(tiny_base), dtype="float32")
    folder = enc.save(tmp_path / "enc")
    data = T.write_jsonl(
        tmp_path / "h.jsonl", [{"text": t} for t in T.word_texts(WORDS, 12, 3, 12)]
    )
    assert (
        main(["diagnose", str(folder), "--data", str(data), "--out", str(tmp_path / "diag")]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["texts"] == 12 and (tmp_path / "diag" / "spectrum.png").is_file()


def test_model_mining_skips_candidates_scored_like_the_positive():
    import numpy as np

    from training.builders import mine_with_encoder

    # one query; its positive scores 1.0, a near-copy in another unit .99 (a false negative), a
    # related passage .8 and an unrelated one .1
    vec = {
        "q": [1.0, 0.0],
        "answer": [1.0, 0.0],
        "the same answer, copied": [0.99, (1 - 0.99**2) ** 0.5],
        "related": [0.8, 0.6],
        "unrelated": [0.1, (1 - 0.01) ** 0.5],
    }

    class Fixed:
        fingerprint = "f" * 16

        def encode(self, texts, kind, batch_size=32):
            return np.array([vec[t] for t in texts], dtype=np.float32)

    pairs = [{"query": "q", "positive": "answer", "unit": "u0", "source": "s"}] + [
        {"query": "unrelated", "positive": t, "unit": f"u{i}", "source": "s"}
        for i, t in enumerate(["the same answer, copied", "related", "unrelated"], 1)
    ]
    for seed in range(4):  # pool 1: the hardest candidate left
        rows, stats = mine_with_encoder(pairs, Fixed(), pool=1, seed=seed)
        assert rows[0]["query"] == "q" and rows[0]["negative"] == "related"
        assert stats["false_negatives"] >= 1
    drawn = {
        mine_with_encoder(pairs, Fixed(), pool=1, seed=s, max_ratio=None)[0][0]["negative"]
        for s in range(8)
    }
    assert drawn == {"the same answer, copied"}  # without the filter: the copy, every time
