"""doc2query: questions the bundled instruct LM writes for real passages, kept only if they find them.

Users type questions; most of our real pairs have titles, docstring summaries or option sentences
as queries. Here SmolLM2-135M-Instruct (the bundled base) reads a passage and writes one short
question it answers. A small LM often writes questions that are generic ("What is the purpose of
this function?") or about something else, so a question is kept only if BM25 over the passage pool
of its source ranks its own passage in the top ``k``: the pair then carries a real lexical link,
and a question that names nothing is dropped. all-MiniLM-L6-v2 is not used (no measurement yet
says it would help).

Passages are the ``train`` rows of ``training.qdata``'s ``qdata.jsonl`` (manual sections, code
with its docstring removed, man-page options), so the split against every evaluation task
(excluded files, ManPageRetrieval test pages, the per-unit val split) is inherited; the rows are
checked again with ``qdata.check_rows``. Pools (for the filter and the hard negatives) are the
train passages of one source, as qdata mines them: one manual, one code base, all man options.

Generation is resumable: ``doc2query-raw.jsonl`` gets one line per passage as batches finish, and
the same command skips passages already there (settings that would mix outputs are refused).
Every run then rewrites, from all generated rows, ``doc2query-judged.jsonl`` (every question with
its reason and BM25 rank), ``doc2query-scl.jsonl`` (kept pairs + one BM25 hard negative of the same
pool, same-unit documents skipped as qdata does; ``source`` is ``d2q:<qdata source>`` for the data
spec's ``sources`` selector) and ``manifest.json`` (qdata's package versions, sha256 of every file,
keep rates per kind, generator settings, passages/s of each run).

    python -m training.doc2query --passages ~/.cache/compsearch/training-data/qdata/qdata.jsonl \\
        --out ~/.cache/compsearch/training-data/doc2query --limit 1500 --max-minutes 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from .errors import TrainingError
from .roundtrip import judge, keep_counts, kind_of, mine_negatives, pool_of, pools_of

log = logging.getLogger(__name__)

D2Q_VERSION = 1
SEED = 4244
KINDS = ("sections", "manopt", "code")
# Tried on SmolLM2-135M-Instruct (12 passages, see training/README.md): "write one short question a
# user would type into a search box" leaks "search box" into the questions; this one does not.
PROMPT = "Read the text and ask a question about it.\n\nText: {passage}"
PREFILL = "Question:"
RAW, JUDGED, SCL, STATE = (
    "doc2query-raw.jsonl",
    "doc2query-judged.jsonl",
    "doc2query-scl.jsonl",
    "doc2query-state.json",
)
_PREFIX = re.compile(r"^\s*(?:question|q)\s*[:\-]\s*", re.I)
_META = re.compile(
    r"\b(the|this|above|given) (text|passage|document|code snippet|snippet)\b|great question|"
    r"search box|\bthe answer\b|help you|can i assist",
    re.I,
)


def passage_id(row: dict) -> str:
    return hashlib.sha256(f"{row['unit']}\0{row['positive']}".encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------- passages


def load_passages(path: str | Path, kinds=KINDS) -> list[dict]:
    """The distinct train passages of ``kinds`` in a qdata file (TrainingError if there are none)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TrainingError(
            f"passages not found: {p} (build them with `python -m training.qdata build --out DIR`)"
        )
    from .data import iter_records

    rows, seen = [], set()
    for r in iter_records({"files": [str(p)]}, "error", Counter()):
        if not all(isinstance(r.get(k), str) for k in ("positive", "source", "unit")):
            raise TrainingError(f"{r['_where']}: a qdata row needs positive, source and unit")
        if r.get("split") != "train" or kind_of(r["source"]) not in kinds or r["positive"] in seen:
            continue
        seen.add(r["positive"])
        rows.append({k: r.get(k) for k in ("positive", "source", "unit", "package")})
    if not rows:
        raise TrainingError(f"{p}: no train passages of kinds {', '.join(kinds)}")
    return rows


def sample_passages(rows: list[dict], limit: int | None, seed: int = SEED) -> list[dict]:
    """Kinds interleaved (each shuffled with ``seed``), so any prefix of the order is a mix; a larger
    ``limit`` extends a smaller one's sample."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[kind_of(r["source"])].append(r)
    rng = random.Random(seed)
    queues = []
    for kind in sorted(by):
        group = list(by[kind])
        rng.shuffle(group)
        queues.append(group)
    out = []
    for i in range(max(len(q) for q in queues)):
        out += [q[i] for q in queues if i < len(q)]
    return out[:limit] if limit else out


# ---------------------------------------------------------------------------- post-processing


def clean_question(
    raw: str, passage: str, *, min_words: int = 3, max_words: int = 24, max_chars: int = 200
) -> tuple[str | None, str]:
    """(question or None, reason): one line, ends at its first '?', length bounds, not meta, not a copy."""
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"'`*").strip()
    if not line:
        return None, "empty"
    if "?" not in line:
        return None, "no_question_mark"
    line = line[: line.index("?") + 1].strip()
    words = line.split()
    if len(words) < min_words:
        return None, "too_short"
    if len(words) > max_words or len(line) > max_chars:
        return None, "too_long"
    if _META.search(line):
        return None, "meta"
    low = [w.lower() for w in words]
    if max(Counter(low).values()) > 3:
        return None, "repetitive"
    head = " ".join(passage.lower().split()[: len(words)])
    body = " ".join(line.lower().rstrip("?").split())
    if len(words) >= 4 and head.startswith(body[: max(1, len(body) - 2)]):
        return None, "copied"
    if len(words) >= 8 and body in " ".join(passage.lower().split()):
        return None, "copied"
    return line, "ok"


# ---------------------------------------------------------------------------- the generator


def stop_at_question(tok, start: int):
    """A stopping criterion: a row is done once its new text (after ``start``) holds '?' or a line
    break. ``stop_strings`` does the same but needs a tokenizer whose vocabulary maps back to text."""
    import torch
    from transformers import StoppingCriteria

    class StopAtQuestion(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tok.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor(["?" in t or "\n" in t for t in texts], device=input_ids.device)

    return StopAtQuestion()


class QuestionGenerator:
    """The instruct LM with its chat template, left-padded batches, greedy or sampled decoding."""

    def __init__(
        self,
        model: str = "bundled",
        *,
        dtype: str | None = None,
        max_passage_tokens: int = 256,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
    ):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from compsearch.backbone import pick_dtype
        from compsearch.models import base_fingerprint, resolve_base

        transformers.logging.set_verbosity_error()
        folder = resolve_base(model)
        self.dtype = pick_dtype(torch.device("cpu"), dtype)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype).eval()
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.max_passage_tokens, self.max_new_tokens = max_passage_tokens, max_new_tokens
        self.temperature = temperature
        self.settings = {
            "model": model,
            "fingerprint": base_fingerprint(folder),
            "prompt": PROMPT,
            "prefill": PREFILL,
            "decoding": f"sample t={temperature}" if temperature > 0 else "greedy",
            "stop": ["?", "\\n"],
            "max_passage_tokens": max_passage_tokens,
            "max_new_tokens": max_new_tokens,
        }

    def prompt(self, passage: str) -> str:
        ids = self.tok(passage, add_special_tokens=False)["input_ids"][: self.max_passage_tokens]
        content = PROMPT.format(passage=self.tok.decode(ids).strip())
        if self.tok.chat_template:
            msgs = [{"role": "user", "content": content}]
            return (
                self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
                + PREFILL
            )
        return f"{content}\n{PREFILL}"

    def generate(self, passages: list[str], seed: int = SEED) -> list[str]:
        import torch

        enc = self.tok(
            [self.prompt(p) for p in passages],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not self.tok.chat_template,
        )
        sample = self.temperature > 0
        if sample:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                **({"temperature": self.temperature, "top_k": 0} if sample else {}),
                pad_token_id=self.tok.pad_token_id,
                stopping_criteria=[stop_at_question(self.tok, enc["input_ids"].shape[1])],
            )
        return self.tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# ---------------------------------------------------------------------------- resumable generation


def read_done(path: Path) -> dict[str, dict]:
    """Rows already generated, by passage id; a torn last line (a killed run) is cut off the file."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.warning("%s: dropping an unfinished last line", path)
        with open(path, "r+b") as f:
            f.truncate(end)
    done = {}
    for i, line in enumerate(data[:end].splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
                done[r["id"]] = r
            except (ValueError, KeyError, TypeError):
                raise TrainingError(f"{path}:{i}: not a doc2query row; use another --out") from None
    return done


def check_settings(out: Path, settings: dict) -> None:
    """Refuse to append to rows made with other settings (model, prompt, decoding, passages file)."""
    from compsearch.fsutil import atomic_write_text

    state = out / STATE
    if state.is_file():
        old = json.loads(state.read_text()).get("settings")
        if old != settings:
            diff = sorted(k for k in {**old, **settings} if old.get(k) != settings.get(k))
            raise TrainingError(
                f"{out} holds questions made with other settings ({', '.join(diff)}); "
                "use another --out or the same settings"
            )
    else:
        atomic_write_text(state, json.dumps({"settings": settings, "runs": []}, indent=1) + "\n")


def generate_missing(
    order: list[dict],
    out: Path,
    generator,
    *,
    batch_size: int = 16,
    max_minutes: float | None = None,
    seed: int = SEED,
    progress: bool = False,
) -> dict:
    """Generate for the passages of ``order`` not yet in ``doc2query-raw.jsonl``; append as batches end."""
    from tqdm.auto import tqdm

    raw = out / RAW
    done = read_done(raw)
    todo = [r for r in order if passage_id(r) not in done]
    t0, n, stopped = time.time(), 0, False
    bar = tqdm(
        total=len(order),
        initial=len(order) - len(todo),
        desc="doc2query",
        unit="passage",
        disable=not progress,
        mininterval=5,
    )
    block = batch_size * 4  # length-sorted within a block: less padding, order kept across blocks
    with open(raw, "a", encoding="utf-8") as f:
        for s in range(0, len(todo), block):
            part = sorted(todo[s : s + block], key=lambda r: len(r["positive"]))
            for b in range(0, len(part), batch_size):
                if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                    stopped = True
                    break
                batch = part[b : b + batch_size]
                texts = generator.generate([r["positive"] for r in batch], seed=seed + s + b)
                for r, text in zip(batch, texts):
                    q, why = clean_question(text, r["positive"])
                    row = {"id": passage_id(r), **r, "raw": text, "question": q, "reason": why}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                n += len(batch)
                bar.update(len(batch))
            if stopped:
                break
    bar.close()
    secs = time.time() - t0
    return {
        "generated": n,
        "seconds": round(secs, 1),
        "passages_per_s": round(n / secs, 4) if n else None,
        "stopped_by_max_minutes": stopped,
        "remaining": len(todo) - n,
    }


# ---------------------------------------------------------------------------- outputs


def _sha256(path: Path) -> str:
    from benchmarks.mteb_suite.sources import sha256_file  # the suite's file digest, one copy

    return sha256_file(path)


def build_outputs(
    out: Path, passages: Path, pool_rows: list[dict], k: int, settings: dict, run: dict, tasks_dir
) -> dict:
    """Judge every generated row, mine negatives for the kept ones, write files and the manifest."""
    from compsearch.fsutil import atomic_write_text

    from .builders import _write_jsonl
    from .qdata import check_rows, man_guard

    pools = pools_of(pool_rows)
    rows = list(read_done(out / RAW).values())
    judged = judge(rows, pools, k)
    kept = [r for r in judged if r["kept"]]
    triples, mining = mine_negatives(kept, pools)
    if tasks_dir is None:
        from benchmarks.mteb_suite import sources as S

        tasks_dir = S.cache_dir() / "tasks"
    check = check_rows(kept, man_guard(Path(tasks_dir)))
    files = {
        JUDGED: _write_jsonl(out / JUDGED, judged),
        SCL: _write_jsonl(out / SCL, triples),
        RAW: {"records": len(rows), "sha256": _sha256(out / RAW)},
    }
    qman = passages.parent / "manifest.json"
    qm = json.loads(qman.read_text()) if qman.is_file() else {}
    packages = {p.get("package") for r in kept for p in pools[pool_of(r["source"])]}
    state = json.loads((out / STATE).read_text())
    state["runs"].append(run)
    atomic_write_text(out / STATE, json.dumps(state, indent=1) + "\n")
    manifest = {
        "builder": "training.doc2query",
        "builder_version": D2Q_VERSION,
        "seed": SEED,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "passages": {
            "file": str(passages),
            "sha256": settings["passages_sha256"],
            "split": "train rows only (qdata's split by unit against every evaluation task)",
            "qdata_manifest_sha256": _sha256(qman) if qman.is_file() else None,
            "qdata_split": qm.get("split"),
        },
        "sources": [s for s in qm.get("sources", []) if s.get("name") in packages],
        "generator": settings,
        "filter": {
            "method": f"BM25 (bm25s, English stopwords, Snowball) over the question's pool: keep if its passage is in the top {k}",
            "k": k,
            "pools": {p: len(pools[p]) for p in sorted({pool_of(r["source"]) for r in rows})},
            "minilm": "not used",
        },
        "counts": {
            "by_kind": keep_counts(judged),
            "outcomes": dict(Counter(r["reason"] for r in judged)),
        },
        "mining": dict(mining),
        "split_check": check,
        "files": files,
        "runs": state["runs"],
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def run(
    passages: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    kinds=KINDS,
    seed: int = SEED,
    k: int = 3,
    batch_size: int = 16,
    max_minutes: float | None = None,
    generator=None,
    generator_kw: dict | None = None,
    tasks_dir=None,
    threads: int = 1,
    progress: bool = False,
) -> dict:
    """Load passages, generate the missing questions (resumably), then judge, mine and write."""
    if limit is not None and limit < 1:
        raise TrainingError(f"--limit must be a positive number of passages, not {limit}")
    if batch_size < 1 or k < 1:
        raise TrainingError("--batch-size and --top-k must be at least 1")
    passages = Path(passages).expanduser()
    # every kind: the pools of rows that earlier runs generated with other --kinds too
    pool_rows = load_passages(passages)
    order = sample_passages([r for r in pool_rows if kind_of(r["source"]) in kinds], limit, seed)
    if not order:
        raise TrainingError(f"{passages}: no train passages of kinds {', '.join(kinds)}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if generator is None:
        import torch

        torch.set_num_threads(threads)
    gen = generator or QuestionGenerator(**(generator_kw or {}))
    settings = {**gen.settings, "seed": seed, "passages_sha256": _sha256(passages)}
    check_settings(out, settings)
    run_info = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "limit": limit,
        "kinds": list(kinds),
        "batch_size": batch_size,
        "dtype": str(getattr(gen, "dtype", "")),
    }
    run_info.update(
        generate_missing(
            order,
            out,
            gen,
            batch_size=batch_size,
            max_minutes=max_minutes,
            seed=seed,
            progress=progress,
        )
    )
    return build_outputs(out, passages, pool_rows, k, settings, run_info, tasks_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.doc2query", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--passages", required=True, help="qdata.jsonl (training.qdata build)")
    ap.add_argument("--out", required=True, help="output folder (resumed when it exists)")
    ap.add_argument(
        "--limit", type=int, default=None, help="passages to sample (kinds interleaved)"
    )
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"subset of {','.join(KINDS)}")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument(
        "--top-k", type=int, default=3, help="keep a question if its passage is in BM25's top k"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-passage-tokens", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--model", default="bundled", help="instruct LM (bundled, or a folder)")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 where native), bfloat16, float32")
    ap.add_argument(
        "--max-minutes", type=float, default=None, help="stop generating after M minutes"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--tasks-dir", default=None, help="the suite's built tasks (default: its cache)"
    )
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from compsearch.errors import CompsearchError

    try:
        kinds = [x for x in a.kinds.split(",") if x]
        if not kinds or set(kinds) - set(KINDS):
            raise TrainingError(f"unknown kinds {a.kinds!r}; known: {', '.join(KINDS)}")
        m = run(
            a.passages,
            a.out,
            limit=a.limit,
            kinds=kinds,
            seed=a.seed,
            k=a.top_k,
            batch_size=a.batch_size,
            max_minutes=a.max_minutes,
            progress=True,
            tasks_dir=a.tasks_dir,
            threads=a.threads,
            generator_kw={
                "model": a.model,
                "dtype": a.dtype,
                "temperature": a.temperature,
                "max_passage_tokens": a.max_passage_tokens,
                "max_new_tokens": a.max_new_tokens,
            },
        )
    except CompsearchError as exc:  # TrainingError, or a model the library cannot load
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "counts": m["counts"],
                "runs": m["runs"][-1:],
                "files": {k: v["records"] for k, v in m["files"].items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
