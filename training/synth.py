"""Synthetic queries: the bundled instruct LM writes a search query for each passage (batched, greedy).

Real question-style queries are scarce offline; these give extra SCL pairs
``{query, positive, source: "synthetic:<source>", unit}`` (same unit as the passage, so the split
against the evaluation tasks carries over). Add hard negatives with ``python -m training mine`` and
list the result next to ``scl.jsonl`` in ``data.train`` to measure whether they help (the ablation is
run by the training session that owns the long runs).

    python -m training synth --passages ~/.cache/compsearch/training-data/ctkd.jsonl \\
        --out ~/.cache/compsearch/training-data/synthetic_pairs.jsonl --limit 2000
    python -m training mine --pairs .../synthetic_pairs.jsonl --out .../scl_synthetic.jsonl
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

log = logging.getLogger(__name__)

# Tried on SmolLM2-135M-Instruct (8 passages): asking for "a search query, reply with the query only"
# gets summaries; "ask a question about it" with the answer prefilled by "Question:" gets questions.
PROMPT = "Read the text and ask a question about it.\n\nText: {passage}"
PREFILL = "Question:"
_PREFIX = re.compile(r"^\s*(?:search\s+)?(?:query|question|q)\s*[:\-]\s*", re.I)


def clean_query(
    text: str, passage: str, *, min_words: int = 2, max_words: int = 24
) -> tuple[str | None, str]:
    """(query or None, reason). First non-empty line, prefixes and quotes stripped, sanity checks."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"'`*").strip()
    if not line:
        return None, "empty"
    words = line.split()
    if len(words) < min_words:
        return None, "too_short"
    if len(words) > max_words:
        return None, "too_long"
    low = line.lower()
    if "passage" in low or "the text" in low or "query" in low.split()[:1]:
        return None, "meta"
    if len(words) >= 8 and low.rstrip("?.") in passage.lower():
        return None, "copied"
    return line, "ok"


class QueryGenerator:
    def __init__(
        self,
        model_spec: str = "bundled",
        device: str = "auto",
        dtype: str | None = None,
        max_passage_tokens: int = 256,
    ):
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from compsearch.encoder import pick_device, pick_dtype
        from compsearch.models import base_fingerprint, resolve_base

        transformers.logging.set_verbosity_error()
        folder = resolve_base(model_spec)
        self.device = pick_device(device)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=pick_dtype(self.device, dtype)
        ).to(self.device)
        self.model.eval()
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.max_passage_tokens = max_passage_tokens
        self.info = {
            "model": model_spec,
            "fingerprint": base_fingerprint(folder),
            "prompt": PROMPT,
            "prefill": PREFILL,
            "decoding": "greedy",
            "max_passage_tokens": max_passage_tokens,
        }

    def _prompt(self, passage: str) -> str:
        ids = self.tok(passage, add_special_tokens=False)["input_ids"][: self.max_passage_tokens]
        passage = self.tok.decode(ids)
        content = PROMPT.format(passage=passage)
        if self.tok.chat_template:
            return (
                self.tok.apply_chat_template(
                    [{"role": "user", "content": content}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                + PREFILL
            )
        return f"{content}\n{PREFILL}"

    @torch.inference_mode()
    def generate(
        self, passages: Sequence[str], *, batch_size: int = 8, max_new_tokens: int = 32
    ) -> list[str]:
        prompts = [self._prompt(p) for p in passages]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out = [""] * len(prompts)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = self.tok(
                [prompts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                add_special_tokens=not self.tok.chat_template,
            ).to(self.device)
            gen = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
            for i, row in zip(idx, gen[:, enc["input_ids"].shape[1] :]):
                out[i] = self.tok.decode(row, skip_special_tokens=True)
        return out


def synthesize(
    records: list[dict],
    generator: QueryGenerator,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = False,
) -> tuple[list[dict], Counter]:
    from tqdm.auto import tqdm

    stats: Counter = Counter()
    rows = []
    chunk = max(batch_size, 1)
    bar = tqdm(total=len(records), desc="synthetic queries", unit="passage", disable=not progress)
    for s in range(0, len(records), chunk):
        part = records[s : s + chunk]
        texts = generator.generate(
            [r["text"] for r in part], batch_size=batch_size, max_new_tokens=max_new_tokens
        )
        for r, raw in zip(part, texts):
            q, why = clean_query(raw, r["text"])
            stats[why] += 1
            if q is not None:
                rows.append(
                    {
                        "query": q,
                        "positive": r["text"],
                        "source": f"synthetic:{r.get('source', 'text')}",
                        "unit": r.get("unit", ""),
                        "synthetic": True,
                    }
                )
        bar.update(len(part))
        bar.set_postfix(kept=len(rows))
    bar.close()
    return drop_repeated_queries(rows, stats), stats


def drop_repeated_queries(rows: list[dict], stats: Counter) -> list[dict]:
    """A query generated for several passages ("What is the output of the following code?") names none
    of them: drop every copy (counted as ``repeated``)."""
    seen = Counter(r["query"].strip().lower() for r in rows)
    kept = [r for r in rows if seen[r["query"].strip().lower()] == 1]
    if len(kept) < len(rows):
        stats["repeated"] += len(rows) - len(kept)
        stats["ok"] -= len(rows) - len(kept)
    return kept


def synthesize_file(
    passages: str,
    out: str,
    *,
    model: str = "bundled",
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    seed: int = 4242,
) -> dict:
    import random

    from .data import iter_records, normalize_spec

    recs = [
        r
        for r in iter_records(normalize_spec(passages), "error", Counter())
        if isinstance(r.get("text"), str) and r["text"].strip()
    ]
    if limit and len(recs) > limit:
        recs = random.Random(seed).sample(recs, limit)
    t0 = time.time()
    gen = QueryGenerator(model)
    rows, stats = synthesize(
        recs, gen, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=True
    )
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    info = {
        "passages": len(recs),
        "queries": len(rows),
        "outcomes": dict(stats),
        "generator": gen.info,
        "source_file": str(passages),
        "seconds": round(time.time() - t0, 1),
    }
    path.with_suffix(".manifest.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
