"""Training data: read, validate, tokenize once, and serve deterministic batches.

Sources (``DataConfig.train``) are specs:

- a local file or glob: ``.jsonl`` (read here line by line, so a malformed line is reported as
  ``file:line``), ``.parquet`` / ``.csv`` / ``.json`` / ``.arrow`` and ``.txt`` (one record per
  line) through ``datasets``; relative paths resolve against ``DataConfig.data_dir``;
- ``"hf:NAME"`` or ``{"hub": NAME, "config": ..., "split": "train", "data_files": ..., "revision": ...}``:
  a Hugging Face hub dataset through ``datasets.load_dataset`` (needs a network).

Every source is recorded (file sha256 and size, or hub name/revision/fingerprint, plus the builder's
``manifest.json`` when one sits next to the file) with its counts: records read, used, skipped
(empty, too short, missing field, malformed) and truncated.

Order is a pure function of (seed, position): position ``p`` in the stream is item
``perm(seed, epoch)[p % n]`` with ``epoch = p // n``, and a CTKD split point depends only on
(seed, epoch, item). So resuming needs only the step number, and every process of a multi-process
run reads its own slice of the same global batch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .config import PRETEXT_STAGES, TrainConfig
from .errors import TrainingError
from .model import format_query
from .objectives import PretextBatch, SentenceBatch, TripleBatch

log = logging.getLogger(__name__)

TOKENIZE_CHUNK = 1024
_WARN_LIMIT = 5


# ---------------------------------------------------------------------------- specs and reading


def normalize_spec(spec, data_dir: str | Path | None = None) -> dict:
    """A spec as a dict: {"files": [...]} or {"hub": name, ...}."""
    if isinstance(spec, dict):
        if "hub" in spec:
            return {"split": "train", **spec}
        if "path" in spec:
            return {
                **normalize_spec(spec["path"], data_dir),
                **{k: v for k, v in spec.items() if k != "path"},
            }
        raise TrainingError(f"a data spec dict needs 'hub' or 'path': {spec}")
    if not isinstance(spec, str) or not spec:
        raise TrainingError(f"a data spec must be a path, 'hf:NAME' or a dict, not {spec!r}")
    if spec.startswith("hf:"):
        return {"hub": spec[3:], "split": "train"}
    path = Path(spec).expanduser()
    candidates = (
        [path]
        if path.is_absolute()
        else [Path.cwd() / path] + ([Path(data_dir).expanduser() / path] if data_dir else [])
    )
    for c in candidates:
        matches = (
            sorted(glob.glob(str(c)))
            if any(ch in str(c) for ch in "*?[")
            else ([str(c)] if c.exists() else [])
        )
        if matches:
            return {"files": matches}
    where = " or ".join(str(c) for c in candidates)
    raise TrainingError(
        f"training data not found: {spec} (looked at {where}); build it with "
        f"`python -m training data` or fix data.train / data.data_dir"
    )


def _read_jsonl(path: str, on_malformed: str, counts: Counter) -> Iterator[dict]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
            except (UnicodeDecodeError, ValueError) as exc:
                msg = f"{path}:{lineno}: malformed JSONL line ({exc})"
                if on_malformed == "error":
                    raise TrainingError(
                        msg + "; fix the line or set data.on_malformed=skip"
                    ) from None
                counts["malformed"] += 1
                if counts["malformed"] <= _WARN_LIMIT:
                    log.warning("%s (skipped)", msg)
                continue
            counts["read"] += 1
            rec["_where"] = f"{path}:{lineno}"
            yield rec


def _read_with_datasets(spec: dict, counts: Counter, cache_dir: str | None) -> Iterator[dict]:
    import datasets

    datasets.disable_progress_bars()
    if "hub" in spec:
        kw = {k: spec[k] for k in ("data_files", "revision") if spec.get(k) is not None}
        try:
            ds = datasets.load_dataset(
                spec["hub"],
                spec.get("config"),
                split=spec.get("split", "train"),
                cache_dir=cache_dir,
                **kw,
            )
        except Exception as exc:  # offline, missing, private: one clear message
            raise TrainingError(
                f"could not load hub dataset {spec['hub']!r} ({type(exc).__name__}: {exc}); "
                "offline, pass a local file"
            ) from None
        spec["fingerprint"] = getattr(ds, "_fingerprint", None)
        where = f"hf:{spec['hub']}"
    else:
        files = spec["files"]
        suffix = Path(files[0]).suffix.lower()
        builder = {
            ".parquet": "parquet",
            ".csv": "csv",
            ".json": "json",
            ".arrow": "arrow",
            ".txt": "text",
            ".text": "text",
        }.get(suffix)
        if builder is None:
            raise TrainingError(
                f"{files[0]}: unsupported file type {suffix!r} (use .jsonl, .parquet, .csv, .json, .txt)"
            )
        try:
            ds = datasets.load_dataset(
                builder, data_files=files, split="train", cache_dir=cache_dir
            )
        except Exception as exc:
            raise TrainingError(
                f"{files[0]}: could not read as {builder} ({type(exc).__name__}: {exc})"
            ) from None
        where = files[0]
    for i, rec in enumerate(ds):
        counts["read"] += 1
        rec = dict(rec)
        rec["_where"] = f"{where}#{i}"
        yield rec


def iter_records(
    spec: dict,
    on_malformed: str = "error",
    counts: Counter | None = None,
    cache_dir: str | None = None,
) -> Iterator[dict]:
    counts = counts if counts is not None else Counter()
    if "hub" not in spec and all(f.endswith(".jsonl") for f in spec["files"]):
        for f in spec["files"]:
            yield from _read_jsonl(f, on_malformed, counts)
    else:
        yield from _read_with_datasets(spec, counts, cache_dir)


def describe_source(spec: dict) -> dict:
    """Version information: file digests (and the builder manifest) or the hub dataset identity."""
    if "hub" in spec:
        return {k: v for k, v in spec.items() if k != "files"}
    out = {"files": []}
    for f in spec["files"]:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        entry = {
            "path": str(Path(f).resolve()),
            "sha256": h.hexdigest(),
            "bytes": Path(f).stat().st_size,
        }
        manifest = Path(f).parent / "manifest.json"
        if manifest.is_file():
            try:
                m = json.loads(manifest.read_text())
                entry["manifest"] = {
                    k: m.get(k) for k in ("builder", "builder_version", "created", "seed")
                }
                entry["manifest"]["sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
                entry["manifest"]["sources"] = sorted(
                    {
                        f"{s.get('name')}={s.get('version')}"
                        for s in m.get("sources", [])
                        if isinstance(s, dict)
                    }
                )
                entry["manifest"]["file"] = m.get("files", {}).get(Path(f).name)
            except ValueError:
                entry["manifest"] = "unreadable"
        out["files"].append(entry)
    return out


# ---------------------------------------------------------------------------- token storage


class TokenStore:
    """Many token lists in one flat int32 array (compact for 100k+ passages)."""

    def __init__(self):
        self._chunks: list[np.ndarray] = []
        self._lengths: list[int] = []
        self._flat: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    def add(self, ids: list[int]) -> int:
        self._chunks.append(np.asarray(ids, dtype=np.int32))
        self._lengths.append(len(ids))
        self._flat = None
        return len(self._lengths) - 1

    def _freeze(self):
        if self._flat is None:
            self._flat = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int32)
            self._offsets = np.concatenate([[0], np.cumsum(self._lengths)]).astype(np.int64)
            self._chunks = [self._flat]  # keep one reference; add() after freeze still works

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, i: int) -> list[int]:
        self._freeze()
        return self._flat[self._offsets[i] : self._offsets[i + 1]].tolist()

    def length(self, i: int) -> int:
        return self._lengths[i]


# ---------------------------------------------------------------------------- stage datasets


@dataclass
class SourceStats:
    spec: object
    counts: Counter = field(default_factory=Counter)
    version: dict = field(default_factory=dict)

    def record(self) -> dict:
        c = dict(self.counts)
        out = {
            "spec": self.spec,
            **self.version,
            "read": c.pop("read", 0),
            "used": c.pop("used", 0),
            "truncated": c.pop("truncated", 0),
        }
        for key in ("not_selected", "not_sampled"):
            if key in c:
                out[key] = c.pop(key)
        return {**out, "skipped": c}


def _select_sources(records: Iterator[dict], sources, counts: Counter, where) -> Iterator[dict]:
    """``{"path": ..., "sources": ["sections", "code:numpy"]}``: only records whose ``source`` is one
    of these or starts with one of them followed by ``:`` (a kind selects all its packages). Applied
    before ``sample``, so a mix can take n records of one kind from a file that holds several."""
    if (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(x, str) and x for x in sources)
    ):
        raise TrainingError(f"{where}: 'sources' must be a non-empty list of source names")
    wanted = tuple(sources)
    for rec in records:
        src = str(rec.get("source", ""))
        if src in wanted or src.startswith(tuple(w + ":" for w in wanted)):
            yield rec
        else:
            counts["not_selected"] += 1


def _sample(records: Iterator[dict], n, seed: int, counts: Counter, where) -> list[dict]:
    """``{"path": ..., "sample": n}``: n records drawn without replacement (seeded), in file order."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise TrainingError(f"{where}: 'sample' must be a positive number of records, not {n!r}")
    import random

    recs = list(records)
    keep = sorted(random.Random(seed).sample(range(len(recs)), min(n, len(recs))))
    counts["not_sampled"] += len(recs) - len(keep)
    return [recs[i] for i in keep]


class StageData:
    """Tokenized items of one stage plus their provenance."""

    kind = "base"

    def __init__(self, cfg: TrainConfig, tokenize):
        self.cfg = cfg
        self.tokenize = tokenize  # list[str] -> list[list[int]] (the student's tokenizer)
        self.sources: list[SourceStats] = []
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    # ------------------------------------------------------------ loading
    def load(self, specs: list) -> "StageData":
        d = self.cfg.data
        if not specs:
            raise TrainingError(f"no training data for stage {self.cfg.stage}: set data.train")
        for raw in specs:
            spec = normalize_spec(raw, d.data_dir)
            stats = SourceStats(spec=raw)
            stats.version = describe_source(spec)
            pending: list[tuple[dict, str]] = []
            seen_fields: set[str] = set()
            records = iter_records(spec, d.on_malformed, stats.counts, d.hf_cache_dir)
            if spec.get("sources") is not None:
                records = _select_sources(records, spec["sources"], stats.counts, raw)
            if spec.get("sample") is not None:
                records = _sample(records, spec["sample"], self.cfg.seed, stats.counts, raw)
            for rec in records:
                seen_fields.update(k for k in rec if k != "_where")
                pending.append(rec)
                if len(pending) >= TOKENIZE_CHUNK:
                    self._add_chunk(pending, stats)
                    pending = []
                if d.limit and len(self) + len(pending) >= d.limit:
                    break
            if pending:
                self._add_chunk(pending, stats)
            if stats.counts["read"] and stats.counts["missing_field"] == stats.counts["read"]:
                raise TrainingError(
                    f"{raw}: no record has the field(s) this stage needs "
                    f"({', '.join(self.needed_fields())}); fields seen: {sorted(seen_fields)[:10]}"
                )
            self.sources.append(stats)
            log.info("%s: %s", raw, stats.record())
            if d.limit and len(self) >= d.limit:
                break
        if len(self) == 0:
            raise TrainingError(
                f"no usable training records for stage {self.cfg.stage}: "
                + "; ".join(f"{s.spec}: {dict(s.counts)}" for s in self.sources)
            )
        return self

    def needed_fields(self) -> list[str]:
        raise NotImplementedError

    def _text(self, rec: dict, key: str, stats: SourceStats) -> str | None:
        value = rec.get(key)
        if value is None:
            stats.counts["missing_field"] += 1
            if stats.counts["missing_field"] <= _WARN_LIMIT:
                log.warning("%s: no field %r (skipped)", rec.get("_where"), key)
            return None
        if not isinstance(value, str):
            stats.counts["not_text"] += 1
            return None
        if not value.strip():
            stats.counts["empty"] += 1
            return None
        if len(value.strip()) < self.cfg.data.min_chars:
            stats.counts["short"] += 1
            return None
        return value

    def _cut(self, ids: list[int], stats: SourceStats, limit: int | None = None) -> list[int]:
        limit = limit or self.cfg.model.max_length
        if len(ids) > limit:
            stats.counts["truncated"] += 1
            return ids[:limit]
        return ids

    def provenance(self) -> list[dict]:
        return [s.record() for s in self.sources]

    # ------------------------------------------------------------ order
    def __len__(self) -> int:
        raise NotImplementedError

    def item_at(self, position: int) -> tuple[int, int]:
        """(item index, epoch) at a global stream position."""
        n = len(self)
        epoch, offset = divmod(position, n)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.cfg.seed, epoch, 17]).permutation(n)
            self._perm_epoch = epoch
        return int(self._perm[offset]), epoch

    def batch_at(self, start: int, count: int):
        return self.make_batch([self.item_at(p) for p in range(start, start + count)])

    def make_batch(self, items: list[tuple[int, int]]):
        raise NotImplementedError


class _TextData(StageData):
    """Stages whose records are one text each, kept as token ids in a ``TokenStore``."""

    def __init__(self, cfg, tokenize):
        super().__init__(cfg, tokenize)
        self.store = TokenStore()

    def needed_fields(self):
        return [self.cfg.data.text_field]

    def __len__(self):
        return len(self.store)


class PretextData(_TextData):
    """Passages for ctkd / nll / rc."""

    kind = "passages"

    def _add_chunk(self, recs, stats):
        d = self.cfg.data
        texts = [t for t in (self._text(r, d.text_field, stats) for r in recs) if t is not None]
        need = 2 * d.min_side_tokens if self.cfg.stage != "rc" else max(1, d.min_tokens)
        need = max(need, d.min_tokens)
        for ids in self.tokenize(texts):
            if len(ids) < need:
                stats.counts["too_few_tokens"] += 1
                continue
            self.store.add(self._cut(ids, stats))
            stats.counts["used"] += 1

    def split_point(self, item: int, epoch: int, n: int) -> int:
        lo = self.cfg.data.min_side_tokens
        hi = n - self.cfg.data.min_side_tokens
        return int(np.random.default_rng([self.cfg.seed, epoch, item, 29]).integers(lo, hi + 1))

    def make_batch(self, items):
        ctx, tgt = [], []
        cap = self.cfg.data.max_continuation_tokens
        for item, epoch in items:
            ids = self.store[item]
            if self.cfg.stage == "rc":
                ctx.append(ids)
                tgt.append(ids[:cap] if cap else ids)
                continue
            s = self.split_point(item, epoch, len(ids))
            ctx.append(ids[:s])
            tgt.append(ids[s : s + cap] if cap else ids[s:])
        return PretextBatch(ctx, tgt)


class SentenceData(_TextData):
    """Sentences for ucl."""

    kind = "sentences"

    def _add_chunk(self, recs, stats):
        d = self.cfg.data
        texts = [t for t in (self._text(r, d.text_field, stats) for r in recs) if t is not None]
        for ids in self.tokenize(texts):
            if len(ids) < d.min_tokens:
                stats.counts["too_few_tokens"] += 1
                continue
            self.store.add(self._cut(ids, stats))
            stats.counts["used"] += 1

    def make_batch(self, items):
        return SentenceBatch([self.store[i] for i, _ in items])


class TripleData(StageData):
    """(query, positive, hard negatives) for scl; queries carry the instruction."""

    kind = "triples"

    def __init__(self, cfg, tokenize):
        super().__init__(cfg, tokenize)
        self.queries, self.positives, self.negatives = TokenStore(), TokenStore(), TokenStore()
        self.h = cfg.data.num_hard_negatives

    def needed_fields(self):
        d = self.cfg.data
        return [d.query_field, d.positive_field] + ([d.negative_field] if self.h else [])

    def __len__(self):
        return len(self.queries)

    def _add_chunk(self, recs, stats):
        d = self.cfg.data
        rows = []
        for r in recs:
            q = self._text(r, d.query_field, stats)
            p = q and self._text(r, d.positive_field, stats)
            if not q or not p:
                continue
            negs = []
            if self.h:
                raw = r.get(d.negative_field)
                raw = [raw] if isinstance(raw, str) else (raw or [])
                negs = [n for n in raw if isinstance(n, str) and n.strip()][: self.h]
                if len(negs) < self.h:
                    stats.counts["too_few_negatives"] += 1
                    continue
            instr = r.get(d.instruction_field) if d.use_record_instructions else None
            rows.append((format_query(q, instr or d.query_prompt), p, negs))
        if not rows:
            return
        qs = self.tokenize([r[0] for r in rows])
        ps = self.tokenize([r[1] for r in rows])
        ns = self.tokenize([n for r in rows for n in r[2]]) if self.h else []
        for i, (q_ids, p_ids) in enumerate(zip(qs, ps)):
            if len(q_ids) < d.min_tokens or len(p_ids) < d.min_tokens:
                stats.counts["too_few_tokens"] += 1
                continue
            self.queries.add(self._cut(q_ids, stats))
            self.positives.add(self._cut(p_ids, stats))
            for n_ids in ns[i * self.h : (i + 1) * self.h]:
                self.negatives.add(self._cut(n_ids, stats))
            stats.counts["used"] += 1

    def make_batch(self, items):
        idx = [i for i, _ in items]
        docs = [self.positives[i] for i in idx]
        docs += [self.negatives[i * self.h + j] for i in idx for j in range(self.h)]
        return TripleBatch([self.queries[i] for i in idx], docs)


def stage_data(cfg: TrainConfig, tokenize) -> StageData:
    cls = (
        PretextData
        if cfg.stage in PRETEXT_STAGES
        else SentenceData
        if cfg.stage == "ucl"
        else TripleData
    )
    return cls(cfg, tokenize).load(cfg.data.train)


def heldout_texts(cfg: TrainConfig) -> list[str]:
    """Texts for the diagnostics (``data.heldout``), at most ``heldout_limit``; may be empty."""
    out: list[str] = []
    for raw in cfg.data.heldout:
        spec = normalize_spec(raw, cfg.data.data_dir)
        for rec in iter_records(spec, "skip", Counter(), cfg.data.hf_cache_dir):
            t = rec.get(cfg.data.text_field) or rec.get(cfg.data.positive_field)
            if isinstance(t, str) and t.strip():
                out.append(t)
            if len(out) >= cfg.data.heldout_limit:
                return out
    return out
