"""The two rerankers only an LLM2Comp encoder can offer: MaxSim and compression likelihood.

Both read the chunk's k memory-token states (``memstates.py``) instead of its single mean vector,
and both re-score only the top ``RERANK_DEPTH`` candidates of the search mode.

* **MaxSim** (late interaction in the manner of ColBERT, over memory tokens instead of word
  tokens): score = mean over the query's k memory states of the best cosine with any of the
  chunk's k memory states. The query's states come from the forward that made its vector; the
  chunk's from the store, so an index must keep them (``--memory-states``). It costs a store read
  and a (k x k) product per candidate.
* **Compression likelihood**: score = mean log p(query tokens | chunk's memory states) under the
  frozen base LM run causally, exactly the decoder of the CTKD/NLL training objectives
  (``training/objectives.py``: ``[m_1..m_k, embed(target)]``, the hidden state at position
  ``k - 1 + t`` predicts target token ``t``, LM head on those positions only). The query is the
  target, tokenised as a continuation (no special tokens, a leading space). The mean per query
  token and the sum rank the candidates of one query identically (same query, same length); the
  mean keeps scores comparable across queries. Chunk states come from the store when kept (raw
  state = unit state x norm), else the candidates are encoded at query time (slow: a full encoder
  forward per candidate). Costs one decoder forward over ``k + len(query)`` positions per
  candidate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import memstates
from .errors import CompsearchError

RERANK_DEPTH = 20  # candidates re-scored by maxsim / likelihood
LATE = ("maxsim", "likelihood")


def maxsim(query_units: np.ndarray, doc_units: np.ndarray) -> np.ndarray:
    """Scores (n,) of unit query states (kq, d) against unit chunk states (n, kd, d)."""
    sims = np.einsum("qd,nkd->nqk", query_units, doc_units)
    return sims.max(-1).mean(-1)


def chunk_states(retriever, results, *, unit: bool) -> np.ndarray:
    """States (n, k, dim) of the results' chunks: stored ones, the rest encoded now.

    ``unit``: L2-normalised per token (MaxSim); else raw (what the decoder reads).
    """
    store, _ = retriever._open_read()
    stored = memstates.read(store.db, [r.id for r in results])
    missing = [r for r in results if r.id not in stored]
    if missing:
        texts = [memstates.embed_text(r.text, r.section) for r in missing]
        _, raw = retriever.encoder.encode_states(texts, kind="document")
        for r, s in zip(missing, raw):
            stored[r.id] = memstates.normalise(s)
    out = [stored[r.id] for r in results]
    if unit:
        return np.stack([u for u, _ in out])
    return np.stack([u * n[:, None] for u, n in out])


class MaxSimReranker:
    """Late interaction between the query's and each candidate's memory tokens."""

    depth = RERANK_DEPTH

    def __init__(self, query_states: dict | None = None):
        self.query_states = query_states or {}  # query text -> raw (k, dim) states

    def rerank(self, query, query_vector, results, retriever):
        store, _ = retriever._open_read()
        if memstates.setting(store.db) is None:
            raise memstates.missing_error(retriever.root)
        if not results:
            return results
        raw = self.query_states.get(query)
        if raw is None:
            _, states = retriever.query_encoder.encode_states([query], kind="query")
            raw = states[0]
        q, _ = memstates.normalise(raw)
        scores = maxsim(q, chunk_states(retriever, results, unit=True))
        for r, s in zip(results, scores):
            r.score = float(s)
        return sorted(results, key=lambda r: -r.score)


class LikelihoodReranker:
    """log p(query | chunk's memory states) under the frozen base LM (the CTKD decoder)."""

    depth = RERANK_DEPTH

    def __init__(self, decoder: "Decoder | None" = None):
        self.decoder = decoder

    def rerank(self, query, query_vector, results, retriever):
        if not results:
            return results
        decoder = self.decoder or Decoder.for_index(retriever)
        scores = decoder.score(query, chunk_states(retriever, results, unit=False))
        for r, s in zip(results, scores):
            r.score = float(s)
        return sorted(results, key=lambda r: -r.score)


_DECODERS: dict = {}


class Decoder:
    """The frozen base causal LM reading memory states as a soft prompt."""

    def __init__(self, base_folder: str | Path, dtype=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .backbone import pick_dtype

        self.torch = torch
        self.dtype = pick_dtype(torch.device("cpu"), dtype)
        self.lm = AutoModelForCausalLM.from_pretrained(base_folder, dtype=self.dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(base_folder)

    @classmethod
    def for_index(cls, retriever) -> "Decoder":
        """The base model of the index's encoder (loaded once per process)."""
        import json

        from .models import resolve_base

        cfg_file = Path(retriever.root) / "encoder" / "compsearch_encoder.json"
        if not cfg_file.is_file():
            raise CompsearchError(
                "rerank 'likelihood' needs a compsearch encoder (its base LM is the decoder)"
            )
        folder = str(resolve_base(json.loads(cfg_file.read_text())["base_model"]))
        if folder not in _DECODERS:
            _DECODERS[folder] = cls(folder)
        return _DECODERS[folder]

    def target_ids(self, query: str) -> list[int]:
        ids = self.tokenizer(" " + query.strip(), add_special_tokens=False)["input_ids"]
        if not ids:
            raise CompsearchError("the query has no tokens to score")
        return list(ids)

    def score(self, query: str, states: np.ndarray) -> np.ndarray:
        """Mean log-prob per query token given each of ``states`` (n, k, dim): (n,)."""
        torch = self.torch
        ids = self.target_ids(query)
        n, k, t = len(states), states.shape[1], len(ids)
        with torch.inference_mode():
            target = torch.tensor(ids, dtype=torch.long)
            tok = self.lm.get_input_embeddings()(target)[None].expand(n, -1, -1)
            mem = torch.from_numpy(np.ascontiguousarray(states)).to(tok.dtype)
            inputs = torch.cat([mem, tok], 1)
            attention = torch.ones(n, k + t, dtype=torch.long)
            hidden = self.lm.get_decoder()(
                inputs_embeds=inputs, attention_mask=attention
            ).last_hidden_state[:, k - 1 : k - 1 + t]
            logits = self.lm.get_output_embeddings()(hidden).float()
            softcap = getattr(self.lm.config.get_text_config(), "final_logit_softcapping", None)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            logp = torch.log_softmax(logits, -1)
            picked = logp.gather(-1, target[None, :, None].expand(n, -1, 1))[..., 0]
            return picked.mean(-1).numpy()
