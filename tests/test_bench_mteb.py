"""Offline suite through the real mteb: custom tasks, the encoder wrapper, metrics, runner, CLI.

Everything runs on tiny data with a fake bag-of-words encoder (and a tiny random Llama for the
pooling baseline): offline, CPU only, a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from benchmarks.mteb_suite import builders as B  # noqa: E402
from benchmarks.mteb_suite import run as RUN  # noqa: E402
from benchmarks.mteb_suite.models import (
    CompsearchMTEBEncoder,
    LoadedModel,
    PoolingEncoder,
    make_bm25,
)  # noqa: E402
from benchmarks.mteb_suite.tasks import load_suite, make_task  # noqa: E402

SRC = [
    {
        "registry": "debian",
        "name": "fixture",
        "version": "1.0-1",
        "pinned": "1.0-1",
        "file": "f.deb",
        "sha256": "0" * 64,
    }
]


class BagOfWords:
    """A fake compsearch encoder: hashed bag of words, L2-normalised; records what it was asked."""

    dim = 256
    name = "bag-of-words"
    fingerprint = "f" * 64

    def __init__(self, scramble: bool = False) -> None:
        self.scramble = scramble
        self.seen: list[tuple[str, int]] = []

    def encode(self, texts, *, kind="document", batch_size=32, show_progress=False):
        self.seen.append((kind, len(texts)))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            if self.scramble:  # a useless encoder: a random vector per text
                seed = int(hashlib.md5(t.encode()).hexdigest()[:8], 16)
                out[i] = np.random.default_rng(seed).normal(size=self.dim)
                continue
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        out[:, -1] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


TOPICS = {
    "astronomy": "planet orbit telescope comet nebula galaxy",
    "cooking": "oven recipe flour butter simmer skillet",
    "sailing": "mast keel harbor anchor rudder tide",
    "gardening": "compost seedling trowel mulch pruning bloom",
    "chess": "bishop gambit rook checkmate pawn opening",
    "plumbing": "pipe faucet valve drain wrench leak",
}


def _tiny_suite(root: Path) -> Path:
    tasks = root / "tasks"
    items = []
    for k, (topic, words) in enumerate(TOPICS.items()):
        w = words.split()
        items.append(
            (f"u{k}", f"{w[1]} {w[2]}", f"A text about {topic}: " + " ".join(w[1:]) + ".", "")
        )
    corpus, queries, qrels = B.make_retrieval(items)
    B.write_task(
        B.TaskData(
            name="TinyRetrieval",
            type="Retrieval",
            description="tiny",
            main_score="ndcg_at_10",
            sources=SRC,
            unit_kind="u",
            units={"train": [], "test": [i[0] for i in items]},
            files={"corpus": corpus, "queries": queries, "qrels": qrels},
        ),
        tasks,
    )
    # STS: gold score grows with word overlap, so a bag-of-words encoder ranks pairs perfectly
    base = "alpha beta gamma delta"
    pairs = [
        (base, "zeta eta theta iota", 0.0),
        (base, "alpha eta theta iota", 1.0),
        (base, "alpha beta theta iota", 2.0),
        (base, "alpha beta gamma iota", 3.0),
        (base, base, 4.0),
    ]
    B.write_task(
        B.TaskData(
            name="TinySTS",
            type="STS",
            description="tiny",
            main_score="cosine_spearman",
            sources=SRC,
            files={"test": [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in pairs]},
            extra={"min_score": 0.0, "max_score": 4.0},
        ),
        tasks,
    )
    cls = {"train": [], "test": []}
    units = {"train": [], "test": []}
    for label, words in list(TOPICS.items())[:3]:
        w = words.split()
        for i in range(14):
            side = "test" if i < 4 else "train"
            unit = f"{label}{i}"
            units[side].append(unit)
            cls[side].append(
                {
                    "text": f"{w[i % 6]} {w[(i + 1) % 6]} {w[(i + 3) % 6]}",
                    "label": label,
                    "unit": unit,
                }
            )
    B.write_task(
        B.TaskData(
            name="TinyClassification",
            type="Classification",
            description="tiny",
            main_score="accuracy",
            sources=SRC,
            unit_kind="u",
            units=units,
            files=cls,
        ),
        tasks,
    )
    clu = [
        {
            "text": " ".join(TOPICS[t].split()[:2] + [TOPICS[t].split()[2 + i % 4]]),
            "label": t,
            "unit": f"{t}{i}",
        }
        for t in ("chess", "plumbing")
        for i in range(12)
    ]
    B.write_task(
        B.TaskData(
            name="TinyClustering",
            type="Clustering",
            description="tiny",
            main_score="v_measure",
            sources=SRC,
            unit_kind="u",
            units={"train": [], "test": [r["unit"] for r in clu]},
            files={"test": clu},
        ),
        tasks,
    )
    return tasks


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return _tiny_suite(tmp_path_factory.mktemp("bench"))


@pytest.fixture(autouse=True)
def _small_profile(monkeypatch):
    """One classifier fit and one k-means run per task keep the tests fast; the metrics are the same."""
    from benchmarks.mteb_suite import tasks as T

    monkeypatch.setitem(
        T.PROFILES, "quick", {**T.PROFILES["quick"], "cls_experiments": 1, "clu_bootstraps": 1}
    )


def _score(model, task) -> dict:
    res = mteb.evaluate(
        model,
        task,
        cache=None,
        overwrite_strategy="always",
        show_progress_bar=False,
        co2_tracker=False,
        encode_kwargs={"batch_size": 4, "show_progress_bar": False},
    )
    return res.task_results[0].scores["test"][0]


def test_wrapper_implements_mteb_encoder_protocol():
    from mteb.models import EncoderProtocol

    w = CompsearchMTEBEncoder(BagOfWords())
    assert isinstance(w, EncoderProtocol)
    meta = w.mteb_model_meta
    assert (
        meta.name.startswith("compsearch/") and meta.embed_dim == 256 and meta.revision == "f" * 16
    )
    assert CompsearchMTEBEncoder.kind_for("query") == "query"
    assert CompsearchMTEBEncoder.kind_for("document") == "document"
    assert CompsearchMTEBEncoder.kind_for(None) == "document"


def test_retrieval_through_mteb_uses_query_and_document_kinds(suite):
    enc = BagOfWords()
    task = make_task(suite / "TinyRetrieval", "quick")
    scores = _score(CompsearchMTEBEncoder(enc), task)
    assert scores["ndcg_at_10"] == pytest.approx(1.0)
    assert scores["main_score"] == scores["ndcg_at_10"]
    assert ("query", 6) in enc.seen and ("document", 6) in enc.seen
    bad = _score(
        CompsearchMTEBEncoder(BagOfWords(scramble=True)),
        make_task(suite / "TinyRetrieval", "quick"),
    )
    assert bad["ndcg_at_10"] < 0.9


def test_bm25_baseline_scored_by_the_same_evaluator(suite):
    scores = _score(make_bm25(), make_task(suite / "TinyRetrieval", "quick"))
    assert scores["ndcg_at_10"] == pytest.approx(1.0)


def test_sts_metrics_and_deduplication(suite):
    enc = BagOfWords()
    scores = _score(CompsearchMTEBEncoder(enc), make_task(suite / "TinySTS", "quick"))
    assert scores["cosine_spearman"] == pytest.approx(1.0)
    assert 0.9 < scores["cosine_pearson"] <= 1.0
    # sentence1 is the same text five times: encoded once
    assert ("document", 1) in enc.seen and all(k == "document" for k, _ in enc.seen)
    bad = _score(
        CompsearchMTEBEncoder(BagOfWords(scramble=True)), make_task(suite / "TinySTS", "quick")
    )
    assert bad["cosine_spearman"] < 0.95


def test_classification_and_clustering(suite):
    cls = _score(
        CompsearchMTEBEncoder(BagOfWords()), make_task(suite / "TinyClassification", "quick")
    )
    assert cls["accuracy"] == pytest.approx(1.0)
    clu = _score(CompsearchMTEBEncoder(BagOfWords()), make_task(suite / "TinyClustering", "quick"))
    assert clu["v_measure"] == pytest.approx(1.0)


def test_profiles_subsample_retrieval_keeping_relevant_docs(tmp_path):
    items = [
        (f"u{i}", f"query {i} word{i}", f"document {i} word{i} filler", "") for i in range(300)
    ]
    corpus, queries, qrels = B.make_retrieval(items)
    B.write_task(
        B.TaskData(
            name="Big",
            type="Retrieval",
            description="x",
            main_score="ndcg_at_10",
            sources=SRC,
            units={"train": [], "test": [i[0] for i in items]},
            files={"corpus": corpus, "queries": queries, "qrels": qrels},
        ),
        tmp_path,
    )
    t = make_task(tmp_path / "Big", "quick")
    t.load_data()
    split = t.dataset["default"]["test"]
    assert len(split["queries"]) == 100 and len(split["corpus"]) == 300  # corpus cap 400 > 300
    ids = set(split["corpus"]["id"])
    assert all(d in ids for rel in split["relevant_docs"].values() for d in rel)
    t2 = make_task(tmp_path / "Big", "quick")
    t2.load_data()
    assert t2.dataset["default"]["test"]["queries"]["id"] == split["queries"]["id"]  # fixed seed


def test_runner_writes_json_markdown_and_plot(suite, tmp_path):
    def loader(spec, threads=None, max_tokens=None):
        if spec == "bm25":
            m = make_bm25()
            return LoadedModel(
                spec, "BM25", m, {"kind": "bm25", "load_s": 0.0}, retrieval_only=True
            )
        enc = BagOfWords(scramble=spec == "scrambled")
        return LoadedModel(
            spec,
            spec,
            CompsearchMTEBEncoder(enc, label=spec),
            {"dim": enc.dim, "fingerprint": enc.fingerprint, "load_s": 0.0},
        )

    tasks = load_suite(suite, profile="quick")
    assert [t.metadata.name for t in tasks] == [
        "TinyClassification",
        "TinyClustering",
        "TinyRetrieval",
        "TinySTS",
    ]
    out = tmp_path / "results"
    RUN.evaluate_models(
        tasks,
        ["bow", "bm25"],
        profile="quick",
        out_dir=out,
        stem="quality-quick",
        loader=loader,
        echo=lambda s: None,
    )
    data = json.loads((out / "quality-quick.json").read_text())
    assert data["machine"]["packages"]["mteb"] and data["machine"]["cpu_count"]
    assert data["results"]["bow"]["TinyRetrieval"]["scores"]["main_score"] == pytest.approx(1.0)
    assert "TinySTS" not in data["results"]["BM25"]  # BM25 is retrieval only
    # a second run with another model merges into the same file
    RUN.evaluate_models(
        tasks[-1:],
        ["scrambled"],
        profile="quick",
        out_dir=out,
        stem="quality-quick",
        loader=loader,
        echo=lambda s: None,
    )
    # re-running a model on some tasks keeps its other scores (same weights)
    RUN.evaluate_models(
        tasks[-1:],
        ["bow"],
        profile="quick",
        out_dir=out,
        stem="quality-quick",
        loader=loader,
        echo=lambda s: None,
    )
    data = json.loads((out / "quality-quick.json").read_text())
    assert set(data["results"]) == {"bow", "BM25", "scrambled"}
    assert set(data["results"]["bow"]) == {
        "TinyClassification",
        "TinyClustering",
        "TinyRetrieval",
        "TinySTS",
    }
    md = (out / "quality-quick.md").read_text()
    assert "| TinyRetrieval | Retrieval |" in md and "bow" in md and "scrambled" in md
    assert (out / "quality-quick.png").read_bytes()[:4] == b"\x89PNG"


def test_pooling_baseline_on_tiny_random_llama(tiny_base):
    short, long = "search the index", "parse the json log file and return the sorted table data"
    encoders = {p: PoolingEncoder(tiny_base, p, dtype="float32") for p in ("mean", "last")}
    for enc in encoders.values():
        assert enc.dim == 32 and len(enc.fingerprint) == 64
        alone = enc.encode([short])
        batch = enc.encode(
            [short, long], batch_size=2
        )  # padding must not change the short text's vector
        assert batch.shape == (2, 32)
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(alone[0], batch[0], atol=1e-4)
    assert not np.allclose(encoders["mean"].encode([long]), encoders["last"].encode([long]))
    assert CompsearchMTEBEncoder(encoders["mean"]).mteb_model_meta.embed_dim == 32


def test_wrapper_runs_a_real_compsearch_encoder(suite, tiny_encoder):
    """The library's own Encoder (tiny random base) through the wrapper and mteb's evaluator."""
    w = CompsearchMTEBEncoder(tiny_encoder)
    assert w.mteb_model_meta.revision == str(tiny_encoder.fingerprint)[:16]
    scores = _score(w, make_task(suite / "TinyRetrieval", "quick"))
    assert 0.0 <= scores["ndcg_at_10"] <= 1.0


def test_standard_tasks_offline_fail_with_one_sentence(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = RUN.main(["standard", "--preset", "paper14", "--models", "minilm"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot be reached" in err and "HF_HUB_OFFLINE" in err


def test_standard_preset_resolves_real_mteb_tasks():
    tasks = RUN.standard_tasks(RUN.PRESETS["paper14"])
    assert sorted(t.metadata.name for t in tasks) == sorted(RUN.PRESETS["paper14"])
    sts17 = next(t for t in tasks if t.metadata.name == "STS17")
    assert sts17.hf_subsets == ["en-en"]


def test_connection_errors_are_recognised():
    try:
        try:
            raise OSError("Couldn't reach 'mteb/scifact' on the Hub (LocalEntryNotFoundError)")
        except OSError as inner:
            raise RuntimeError("load failed") from inner
    except RuntimeError as e:
        assert RUN._is_connection_error(e)
    assert not RUN._is_connection_error(ValueError("bad shape"))


def test_run_without_built_tasks_says_build(tmp_path, capsys):
    rc = RUN.main(
        [
            "--cache",
            str(tmp_path),
            "run",
            "--no-build",
            "--tasks",
            "LeeDocSTS",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2 and "build" in capsys.readouterr().err


def test_a_compsearch_encoder_is_capped_at_the_profile_token_budget(tiny_encoder, tmp_path):
    from compsearch import Encoder
    from benchmarks.mteb_suite.models import load_model

    folder = tmp_path / "enc"
    tiny_encoder.save(folder)
    saved = Encoder.load(folder).fingerprint
    loaded = load_model(f"compsearch:{folder}", max_tokens=16)
    assert loaded.label == "compsearch:enc" and loaded.info["max_tokens"] == 16
    assert loaded.info["fingerprint"] == saved  # recorded as saved, before the cap


def test_package_mteb_adapter_scores_any_encoder_and_real_compsearch_encoders(suite, tiny_encoder):
    """``compsearch.integrations.mteb`` is installed with the package (benchmarks/ is not)."""
    from compsearch.integrations import mteb as cmteb

    assert cmteb.CompsearchMTEBEncoder is CompsearchMTEBEncoder
    task = make_task(suite / "TinyRetrieval", "quick")
    assert _score(cmteb.from_pretrained(BagOfWords()), task)["ndcg_at_10"] == pytest.approx(1.0)
    model = cmteb.from_pretrained(tiny_encoder)
    assert model.mteb_model_meta.embed_dim == tiny_encoder.dim
    assert 0.0 <= _score(model, make_task(suite / "TinyRetrieval", "quick"))["ndcg_at_10"] <= 1.0


def test_per_query_scores_average_to_mteb_main_score_and_pair(suite, tmp_path):
    from benchmarks.mteb_suite import paired as P

    def loader(spec, threads=None, max_tokens=None):
        enc = BagOfWords(scramble=spec == "scrambled")
        return LoadedModel(
            spec, spec, CompsearchMTEBEncoder(enc, label=spec), {"fingerprint": spec, "load_s": 0}
        )

    tasks = [t for t in load_suite(suite, profile="quick") if t.metadata.name == "TinyRetrieval"]
    out = tmp_path / "pq"
    RUN.evaluate_models(
        tasks,
        ["bow", "scrambled"],
        profile="quick",
        out_dir=out,
        stem="q",
        loader=loader,
        echo=lambda s: None,
        per_query=True,
    )
    data = json.loads((out / "q.json").read_text())["results"]
    for label in ("bow", "scrambled"):
        r = data[label]["TinyRetrieval"]
        pq = r["per_query"]
        assert len(pq) == len(P.task_qrels(tasks[0]))
        assert sum(pq.values()) / len(pq) == pytest.approx(r["scores"]["main_score"], abs=1e-4)
    a, b = P.per_query_scores(data, "bow"), P.per_query_scores(data, "scrambled")
    cmp = P.paired_bootstrap(a, b, samples=2000)
    assert cmp["diff"] == pytest.approx(
        data["bow"]["TinyRetrieval"]["scores"]["main_score"]
        - data["scrambled"]["TinyRetrieval"]["scores"]["main_score"],
        abs=1e-3,
    )
    assert cmp["ci95"][0] <= cmp["diff"] <= cmp["ci95"][1]
    # without the flag no per-query scores are kept
    RUN.evaluate_models(
        tasks,
        ["bow"],
        profile="quick",
        out_dir=tmp_path / "plain",
        stem="q",
        loader=loader,
        echo=lambda s: None,
    )
    plain = json.loads((tmp_path / "plain" / "q.json").read_text())["results"]
    assert "per_query" not in plain["bow"]["TinyRetrieval"]
