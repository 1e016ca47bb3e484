"""The LLM2Comp text encoder: a causal LM made bidirectional, read out through k memory tokens.

Input to the transformer is ``[text tokens..., m_1..m_k, pad...]`` (right padded). The memory
tokens are k learned input vectors (a small parameter of their own, not vocabulary rows), and the
embedding is the mean of the final-layer hidden states at those k positions, L2-normalised.
Attention is made bidirectional with transformers' supported ``config.is_causal = False``.

A saved encoder is a small folder (see ``EncoderConfig``): the base model is referenced by name and
fingerprint, never copied, so a trained encoder is a few MB.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import CompsearchError
from .backbone import _load_backbone, pick_device, pick_dtype, truncate_config  # noqa: F401 (re-exported)
from .fastpath import check_quantize, merge_adapter, quantize_int8, read_merged, write_merged
from .encoderfolder import (  # noqa: F401 (the folder format; names re-exported for old imports)
    ADAPTER_DIR,
    CONFIG_FILE,
    DEFAULT_QUERY_PROMPT,
    FORMAT_VERSION,
    MEMORY_FILE,
    EncoderConfig,
    _read_adapter,
    _tensor_bytes,
    encoder_fingerprint,
    write_encoder_folder,
)
from .models import BUNDLED, base_fingerprint, resolve_base

log = logging.getLogger(__name__)

# PACKAGED_DEFAULT: where the trained default encoder is shipped
PACKAGED_DEFAULT = Path(__file__).parent / "default_model"


def initial_memory(table: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """k untrained memory vectors, drawn like a random vocabulary row (fixed seed).

    Per-dimension mean of the token embedding table plus N(0, 1) noise scaled by its per-dimension
    std. Used by ``Encoder.from_base`` and by training, so an untrained student is exactly
    compsearch's untrained encoder.
    """
    table = table.detach().float().cpu()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(k, table.shape[1], generator=gen)
    return table.mean(0) + noise * table.std(0)


def format_prompt(text: str, prompt: str | None) -> str:
    """``"{prompt}: {text}\n"`` when a prompt (e.g. a query instruction) is set, else the text."""
    return f"{prompt}: {text}\n" if prompt else text


def memory_inputs(
    embed: torch.nn.Module, memory: torch.Tensor, token_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build ``inputs_embeds`` for ``[text, m_1..m_k]`` rows, right padded.

    Returns (inputs_embeds, attention_mask, memory_mask). Differentiable in ``memory`` and in the
    embedding table, so training uses the same function as inference.
    """
    k = memory.shape[0]
    device = memory.device
    lengths = torch.tensor([len(t) for t in token_ids], device=device)
    width = int(lengths.max()) + k
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    for i, t in enumerate(token_ids):
        ids[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
    ids = ids.to(device)
    pos = torch.arange(width, device=device).unsqueeze(0)
    offset = pos - lengths.unsqueeze(1)  # 0..k-1 at the memory slots
    memory_mask = (offset >= 0) & (offset < k)
    attention_mask = (pos < (lengths + k).unsqueeze(1)).long()
    tok = embed(ids)
    mem = memory.to(tok.dtype)[offset.clamp(0, k - 1)]  # (batch, width, hidden)
    inputs = torch.where(memory_mask.unsqueeze(-1), mem, tok)
    return inputs, attention_mask, memory_mask


def pool_memory(hidden: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states at the memory positions (each row has exactly k of them)."""
    m = memory_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


class Encoder:
    """Encode texts into L2-normalised vectors, in the style of sentence-transformers.

    >>> enc = Encoder.load()            # the default encoder
    >>> vecs = enc.encode(["some passage"], kind="document")
    """

    def __init__(
        self,
        model,
        tokenizer,
        memory: torch.Tensor,
        config: EncoderConfig,
        *,
        adapter: tuple[dict, dict] | None = None,
        source: str | None = None,
        base_path: Path | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.memory = memory
        self.config = config
        self.adapter = adapter  # (peft adapter config dict, {name: tensor}) or None
        self.source = source  # how to load this encoder again: "default", a folder, a base spec
        self.base_path = base_path
        self.truncated_total = 0  # texts cut at max_length since this encoder was loaded
        self.last_truncated: list[int] = []  # indices of texts cut in the last encode() call
        self._fingerprint: str | None = None
        self.quantize: str | None = None  # "int8" when loaded with quantize="int8"
        # memory_states.py sets keep_states while an index that stores memory states is written:
        # each encode() call then keeps {text: (k, dim) float32 states} of its own forward
        self.keep_states = False
        self.last_states: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- loading and saving
    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        quantize: str | None = None,
    ) -> "Encoder":
        """Load an encoder.

        ``None`` or ``"default"``: compsearch's default encoder. A folder with
        ``compsearch_encoder.json``: a saved (e.g. trained) encoder. Anything else is taken as a base
        causal LM (``"bundled"``, a local Hugging Face folder, or a hub id) with fresh memory tokens.
        A trained encoder's LoRA adapter is merged once and the merged weights are cached (see
        ``compsearch.fastpath``). ``quantize="int8"``: per-channel dynamic int8 Linear layers (CPU);
        faster, slightly different vectors, same fingerprint (like a dtype, it is how the weights
        run, not which weights they are).
        """
        quantize = check_quantize(quantize)
        if name_or_path in (None, "default"):
            if (PACKAGED_DEFAULT / CONFIG_FILE).is_file():
                enc = cls._load_folder(PACKAGED_DEFAULT, device, dtype)
            else:
                enc = cls.from_base(BUNDLED, device=device, dtype=dtype)
            enc.source = "default"
        else:
            path = Path(name_or_path).expanduser()
            if (path / CONFIG_FILE).is_file():
                enc = cls._load_folder(path, device, dtype)
            else:
                enc = cls.from_base(str(name_or_path), device=device, dtype=dtype)
        if quantize == "int8":
            enc.model = quantize_int8(enc.model)
            enc.quantize = quantize
        return enc

    @classmethod
    def from_base(
        cls,
        base_model: str = BUNDLED,
        *,
        num_memory_tokens: int = 8,
        max_length: int = 512,
        query_prompt: str | None = DEFAULT_QUERY_PROMPT,
        num_layers: int | None = None,
        seed: int = 0,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> "Encoder":
        """A base causal LM with freshly initialised (untrained) memory tokens.

        The memory vectors are drawn deterministically (``seed``) from a normal distribution with
        the per-dimension mean and std of the token embedding table, like a random vocabulary row.
        """
        folder = resolve_base(base_model)
        model, tokenizer = _load_backbone(folder, device, dtype, num_layers)
        memory = initial_memory(model.get_input_embeddings().weight, num_memory_tokens, seed)
        if Path(base_model).expanduser().is_dir():
            base_model = str(folder)  # absolute, so a saved encoder finds its base from anywhere
        config = EncoderConfig(
            base_model=base_model,
            base_fingerprint=base_fingerprint(folder),
            num_memory_tokens=num_memory_tokens,
            max_length=max_length,
            num_layers=num_layers,
            query_prompt=query_prompt,
        )
        return cls(
            model,
            tokenizer,
            memory.to(model.device),
            config,
            source=str(base_model),
            base_path=folder,
        )

    @classmethod
    def _load_folder(cls, path: Path, device, dtype) -> "Encoder":
        from safetensors.torch import load_file

        path = Path(path).resolve()
        try:
            config = EncoderConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
        except (ValueError, TypeError) as exc:
            raise CompsearchError(
                f"{path / CONFIG_FILE} is not a valid encoder config: {exc}"
            ) from None
        folder = resolve_base(config.base_model)
        actual = base_fingerprint(folder)
        if config.base_fingerprint and actual != config.base_fingerprint:
            raise CompsearchError(
                f"the encoder in {path} was trained on base model {config.base_model} with "
                f"fingerprint {config.base_fingerprint[:12]}, but that model now has {actual[:12]}"
            )
        try:
            memory = load_file(str(path / MEMORY_FILE))["memory"].float()
            adapter = _read_adapter(path / ADAPTER_DIR) if (path / ADAPTER_DIR).is_dir() else None
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            RuntimeError,
        ) as exc:  # safetensors' errors
            raise CompsearchError(
                f"the encoder folder {path} is damaged: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'}"
            ) from None
        except Exception as exc:  # noqa: BLE001  (SafetensorError does not subclass the above)
            if type(exc).__name__ != "SafetensorError":
                raise
            raise CompsearchError(
                f"the encoder folder {path} is damaged: {str(exc)[:160]}"
            ) from None
        fingerprint = encoder_fingerprint(config, memory, adapter)
        cached = read_merged(fingerprint) if adapter is not None else None
        merge = adapter is not None and cached is None
        # the merge runs in fp32 whatever dtype the encoder then runs in, so the cache is exact
        model, tokenizer = _load_backbone(
            folder, device, torch.float32 if merge else dtype, config.num_layers, weights=cached
        )
        if memory.shape != (config.num_memory_tokens, model.config.hidden_size):
            raise CompsearchError(
                f"{path / MEMORY_FILE} has shape {tuple(memory.shape)}, expected "
                f"({config.num_memory_tokens}, {model.config.hidden_size})"
            )
        if merge:
            model = merge_adapter(model, path / ADAPTER_DIR)
            cached = write_merged(fingerprint, model) and read_merged(fingerprint)
            if cached:  # run exactly what every later load will run
                model, tokenizer = _load_backbone(folder, device, dtype, config.num_layers, cached)
            else:  # an unwritable cache: cast the weights only; RoPE's inv_freq stays fp32
                target = pick_dtype(model.device, dtype)
                for param in model.parameters():
                    param.data = param.data.to(target)
        enc = cls(
            model,
            tokenizer,
            memory.to(model.device),
            config,
            adapter=adapter,
            source=str(path),
            base_path=folder,
        )
        enc._fingerprint = fingerprint
        return enc

    def save(self, path: str | os.PathLike) -> Path:
        """Write the encoder folder atomically (config JSON, memory tokens, LoRA adapter)."""
        return write_encoder_folder(path, self.config, self.memory, self.adapter)

    # ---------------------------------------------------------------- identity
    @property
    def dim(self) -> int:
        return int(self.memory.shape[1])

    @property
    def name(self) -> str:
        trained = "trained" if self.config.training else "untrained memory tokens"
        return f"{self.config.base_model} (k={self.config.num_memory_tokens}, {trained})"

    @property
    def fingerprint(self) -> str:
        """sha256 over the config, the base model's fingerprint and every learned tensor."""
        if self._fingerprint is None:
            self._fingerprint = encoder_fingerprint(self.config, self.memory, self.adapter)
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return self.memory.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    # ---------------------------------------------------------------- encoding
    def prepare(self, texts: Sequence[str], kind: str = "document") -> list[str]:
        """Apply the query/document prompt: ``"{prompt}: {text}\\n"`` when a prompt is set."""
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
        prompt = self.config.query_prompt if kind == "query" else self.config.document_prompt
        return [format_prompt(t, prompt) for t in texts]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts as the encoder sees them (used by chunking to respect the budget)."""
        if not texts:
            return []
        return [len(t) for t in self.tokenize(texts)]

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        kind: str = "document",
        batch_size: int = 32,
        show_progress: bool = False,
        normalize: bool | None = None,
        max_length: int | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool | None = None,
    ):
        """Embed texts; returns a float32 array (n, dim), L2-normalised by default.

        Texts are sorted by length and batched to minimise padding; the result is in input order and
        each row does not depend on the rest of the batch. Texts longer than ``max_length`` tokens
        (this call's, else the config's) are cut; their indices are in ``last_truncated`` and a
        warning is logged. A per-call ``max_length`` does not change the encoder's identity.

        sentence-transformers conventions work too: a single string gives a 1-D vector;
        ``prompt_name="query"|"document"`` is ``kind``; ``prompt`` is prepended verbatim instead of
        the configured prompt; ``show_progress_bar``/``normalize_embeddings`` are aliases;
        ``convert_to_tensor=True`` returns a CPU ``torch.Tensor``; ``device`` moves the encoder.
        """
        single = isinstance(texts, str)
        if single:
            texts = [texts]
        if prompt_name is not None:
            kind = prompt_name
        show_progress = show_progress if show_progress_bar is None else show_progress_bar
        normalize = normalize if normalize_embeddings is None else normalize_embeddings
        if device is not None and torch.device(device) != self.device:
            self.to(device)
        out = self._encode_list(
            texts, kind, batch_size, show_progress, normalize, max_length, prompt
        )
        if single:
            out = out[0]
        return torch.from_numpy(out) if convert_to_tensor else out

    def encode_states(
        self, texts: Sequence[str], *, kind: str = "document", **kwargs
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors (n, dim), memory states (n, k, dim))`` from one forward pass.

        The states are the final hidden states at the k memory positions, unnormalised (what the
        embedding is the mean of, and what the CTKD decoder reads); float32, in input order.
        """
        texts = list(texts)
        states = np.zeros((len(texts), self.config.num_memory_tokens, self.dim), np.float32)
        vecs = self._encode_list(
            texts,
            kind,
            kwargs.pop("batch_size", 32),
            False,
            kwargs.pop("normalize", None),
            kwargs.pop("max_length", None),
            kwargs.pop("prompt", None),
            states,
        )
        return vecs, states

    def encode_query(self, texts: str | Sequence[str], **kwargs):
        """``encode(texts, kind="query")``: the query prompt applies."""
        return self.encode(texts, kind="query", **kwargs)

    def encode_document(self, texts: str | Sequence[str], **kwargs):
        """``encode(texts, kind="document")``."""
        return self.encode(texts, kind="document", **kwargs)

    def to(self, device) -> "Encoder":
        """Move the model and memory tokens to ``device`` (like ``nn.Module.to``)."""
        self.model = self.model.to(device)
        self.memory = self.memory.to(device)
        return self

    @torch.inference_mode()
    def _encode_list(
        self, texts, kind, batch_size, show_progress, normalize, max_length, prompt, states=None
    ) -> np.ndarray:
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("encode() takes a string or a list of strings")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive integer, not {max_length!r}")
        raw = list(texts)
        if states is None and self.keep_states:
            states = np.zeros((len(raw), self.config.num_memory_tokens, self.dim), np.float32)
        if prompt is not None:
            self.prepare([], kind)  # still checks kind
            texts = [prompt + t for t in texts]
        else:
            texts = self.prepare(texts, kind)
        ids = self.tokenize(texts) if texts else []
        limit = max_length or self.config.max_length
        self.last_truncated = [i for i, t in enumerate(ids) if len(t) > limit]
        if self.last_truncated:
            self.truncated_total += len(self.last_truncated)
            log.warning(
                "%d of %d texts were longer than %d tokens and were truncated",
                len(self.last_truncated),
                len(ids),
                limit,
            )
        ids = [t[:limit] for t in ids]
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        progress = _progress(show_progress, len(ids))
        try:
            for batch in batches:
                vecs, mem = self._embed_ids([ids[i] for i in batch], states is not None)
                out[batch] = vecs.float().cpu().numpy()
                if states is not None:
                    states[batch] = mem.float().cpu().numpy()
                if progress:
                    progress[0].advance(progress[1], len(batch))
        finally:
            if progress:
                progress[0].stop()
        if normalize if normalize is not None else self.config.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        if self.keep_states:
            self.last_states = dict(zip(raw, states))
        return out

    def _embed_ids(self, token_ids: list[list[int]], states: bool = False):
        """(pooled (B, dim), memory states (B, k, dim) or None) of one batch."""
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id or 0
        inputs, attention, mem_mask = memory_inputs(
            self.model.get_input_embeddings(), self.memory, token_ids, pad
        )
        hidden = self.model(inputs_embeds=inputs, attention_mask=attention).last_hidden_state
        mem = hidden[mem_mask].view(len(token_ids), -1, hidden.shape[-1]) if states else None
        return pool_memory(hidden, mem_mask), mem

    def __repr__(self) -> str:
        return (
            f"Encoder({self.name}, dim={self.dim}, dtype={self.dtype}, device={self.device}, "
            f"fingerprint={self.fingerprint[:12]})"
        )


def _progress(show: bool, total: int):
    if not show or total == 0:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("encoding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    task = progress.add_task("encode", total=total)
    progress.start()
    return progress, task
