"""The model being trained: one causal LM in memory, three roles.

- **student / encoder**: the inner transformer (``causal_lm.model``, no LM head) with a LoRA adapter,
  run with ``is_causal=False`` on ``[text, m_1..m_k]`` built by ``compsearch.encoder.memory_inputs``.
  Its k memory hidden states are the compressed text; ``pool_memory`` gives the embedding. With
  ``num_layers=L`` the student is the first L layers, then the base's final norm: a *view* of the
  inner transformer (a model of the same class built on the meta device whose embedding, first L
  layers, norm and rotary modules are the base's own objects), so no weight is copied.
- **teacher** and **decoder**: the full inner transformer, adapter disabled, run causally, whatever
  the student's depth (a shallow student is distilled from the whole LM, and the whole LM reads its
  memory states); the LM head is applied only to the hidden states at the positions a loss needs.

The LoRA is injected through the student (so only its L layers are adapted, and UCL/SCL train only
them), and its saved adapter loads onto ``AutoModel`` truncated to L layers exactly as
``compsearch.encoder._load_backbone`` + ``PeftModel.from_pretrained(...).merge_and_unload()`` do.
The memory tokens are a separate ``(k, hidden)`` parameter, initialised like
``compsearch.Encoder.from_base`` (so an untrained student *is* compsearch's untrained encoder).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from compsearch.encoder import (
    ADAPTER_DIR,
    CONFIG_FILE,
    MEMORY_FILE,
    format_prompt,
    initial_memory,
    memory_inputs,
    pick_device,
    pick_dtype,
    pool_memory,
)
from compsearch.models import BUNDLED, resolve_base

from .config import ModelConfig
from .errors import TrainingError

log = logging.getLogger(__name__)


def base_spec(spec: str) -> str:
    """The name a saved encoder records for its base (as ``Encoder.from_base`` writes it)."""
    if spec in ("bundled", BUNDLED):
        return BUNDLED
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(resolve_base(spec))
    return spec


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast or None (fp32). "auto" uses bf16 only where it is native (see pick_dtype)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    native = pick_dtype(device, "auto")
    return torch.bfloat16 if native == torch.bfloat16 else None


def set_attention_dropout(model: nn.Module, p: float) -> int:
    """Set the attention-probability dropout of every attention module that has one; returns how many."""
    n = 0
    if hasattr(model.config, "attention_dropout"):
        model.config.attention_dropout = p
    for module in model.modules():
        if isinstance(getattr(module, "attention_dropout", None), (int, float)) and not isinstance(
            getattr(module, "attention_dropout"), bool
        ):
            module.attention_dropout = p
            n += 1
    return n


def base_depth(model: nn.Module) -> int:
    """Number of transformer layers of a causal LM or its inner transformer."""
    return int(model.config.get_text_config().num_hidden_layers)


def student_depth(num_layers: int | None, total: int) -> int | None:
    """The student's depth as an encoder records it: None for the full base, else 1..total-1.

    A depth the base does not have is refused with one line."""
    if num_layers is None:
        return None
    if (
        isinstance(num_layers, bool)
        or not isinstance(num_layers, int)
        or not 1 <= num_layers <= total
    ):
        raise TrainingError(
            f"model.num_layers={num_layers!r} is out of range: the base model has {total} layers "
            f"(use 1..{total}, or null for all)"
        )
    return None if num_layers == total else num_layers


def shallow_view(inner: nn.Module, num_layers: int) -> nn.Module:
    """A transformer of ``inner``'s class with ``num_layers`` layers whose modules *are* ``inner``'s.

    Built on the meta device (no memory), then every child is replaced by ``inner``'s own module,
    the layer list by the first ``num_layers`` layers. Its forward is the library's own code for a
    config of ``num_layers`` layers (``compsearch.encoder.truncate_config``), so it computes exactly
    what ``AutoModel`` truncated at that depth computes, on shared weights."""
    from compsearch.encoder import truncate_config

    total = base_depth(inner)
    cfg = truncate_config(copy.deepcopy(inner.config), num_layers)
    with torch.device("meta"):
        view = type(inner)(cfg)
    for name, child in list(view.named_children()):
        mine = getattr(inner, name)
        if isinstance(mine, nn.ModuleList) and len(mine) == total:
            setattr(view, name, nn.ModuleList(list(mine)[:num_layers]))
        else:
            setattr(view, name, mine)
    left = [n for n, t in list(view.named_parameters()) + list(view.named_buffers()) if t.is_meta]
    if left:
        raise TrainingError(
            f"cannot build a {num_layers}-layer student of {type(inner).__name__}: "
            f"{left[0]} is not shared with the base"
        )
    return view.train(inner.training)


def layer_of(name: str) -> int | None:
    """The transformer layer an adapter tensor belongs to (``...layers.12.self_attn...`` -> 12)."""
    m = re.search(r"\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


class LLM2Comp(nn.Module):
    def __init__(
        self,
        causal_lm,
        tokenizer,
        cfg: ModelConfig,
        base_folder: Path,
        autocast: torch.dtype | None = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.cfg = cfg
        self.base_folder = Path(base_folder)
        self.tokenizer = tokenizer
        self.autocast_dtype = autocast
        for p in causal_lm.parameters():
            p.requires_grad_(False)
        self.lm = causal_lm
        inner = getattr(causal_lm, "model", None)
        if inner is None or not isinstance(inner, nn.Module):
            inner = causal_lm.get_decoder()
        self.inner = inner
        self.student_depth = student_depth(cfg.num_layers, base_depth(inner))
        # the student: the inner transformer itself, or a view of its first L layers
        student = inner if self.student_depth is None else shallow_view(inner, self.student_depth)
        k, hidden = cfg.num_memory_tokens, causal_lm.config.get_text_config().hidden_size
        table = inner.get_input_embeddings().weight
        self.memory = nn.Parameter(
            initial_memory(table, k, cfg.memory_seed).to(table.device),
            requires_grad=cfg.train_memory,
        )
        assert self.memory.shape == (k, hidden)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            bias="none",
        )
        # Wrapping injects LoRA layers into the student's (shared) layers in place, so ``inner`` and
        # ``causal_lm`` see them too; ``disable_adapter`` turns them off for the teacher and decoder.
        with (
            warnings.catch_warnings()
        ):  # peft asks transformers a deprecated question; not ours to fix
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            self.peft = get_peft_model(student, lora)
        if cfg.attention_dropout:
            set_attention_dropout(causal_lm, cfg.attention_dropout)
        if gradient_checkpointing:
            enable = getattr(causal_lm, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:
                causal_lm.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.softcap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        cfg: ModelConfig,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        gradient_checkpointing: bool = False,
    ) -> "LLM2Comp":
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        dev = pick_device(device) if not isinstance(device, torch.device) else device
        ac = autocast_dtype(precision, dev)
        if cfg.base_dtype == "auto":
            weights = torch.bfloat16 if ac is not None else torch.float32
        else:
            weights = pick_dtype(dev, cfg.base_dtype)
        folder = resolve_base(cfg.base)
        # a depth the base does not have: refused before its weights are read
        student_depth(
            cfg.num_layers,
            int(AutoConfig.from_pretrained(folder).get_text_config().num_hidden_layers),
        )
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=weights).to(dev)
        tok = AutoTokenizer.from_pretrained(folder)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return cls(lm, tok, cfg, folder, ac, gradient_checkpointing)

    # ------------------------------------------------------------------ parameters
    def trainable(self) -> dict[str, nn.Parameter]:
        """Trainable parameters by their saved names (peft's adapter-file keys, plus "memory")."""
        out = {}
        if self.memory.requires_grad:
            out["memory"] = self.memory
        for name, p in self.peft.named_parameters():
            if p.requires_grad:
                out[name.replace(".default.", ".")] = p
        return out

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        return {
            name.replace(".default.", "."): p
            for name, p in self.peft.named_parameters()
            if "lora_" in name
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything learned (adapter + memory, trainable or frozen), fp32 copies on the CPU."""
        out = {k: v.detach().float().cpu().clone() for k, v in self.adapter_tensors().items()}
        out["memory"] = self.memory.detach().float().cpu().clone()
        return out

    def load_state_tensors(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        where: str = "checkpoint",
        require_memory: bool = True,
    ) -> None:
        adapter = self.adapter_tensors()
        given = {k for k in tensors if k != "memory"}
        missing, extra = set(adapter) - given, given - set(adapter)
        if missing or extra:
            raise TrainingError(
                f"{where}: adapter does not match this LoRA config "
                f"(missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]}; "
                f"check lora_r / lora_targets / num_layers)"
            )
        with torch.no_grad():
            for k, p in adapter.items():
                if tensors[k].shape != p.shape:
                    raise TrainingError(
                        f"{where}: {k} has shape {tuple(tensors[k].shape)}, expected {tuple(p.shape)}"
                    )
                p.copy_(tensors[k].to(p.device, p.dtype))
            if "memory" in tensors:
                if tensors["memory"].shape != self.memory.shape:
                    raise TrainingError(
                        f"{where}: memory has shape {tuple(tensors['memory'].shape)}, "
                        f"expected {tuple(self.memory.shape)} (num_memory_tokens?)"
                    )
                self.memory.copy_(tensors["memory"].to(self.memory.device, self.memory.dtype))
            elif require_memory:
                raise TrainingError(f"{where}: no memory tensor")

    def load_encoder_folder(self, folder: Path) -> None:
        """Continue from a compsearch encoder folder (the previous stage's export)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        tensors = dict(load_file(str(folder / MEMORY_FILE)))
        adapter_file = folder / ADAPTER_DIR / "adapter_model.safetensors"
        if adapter_file.is_file():
            cfg = json.loads((folder / ADAPTER_DIR / "adapter_config.json").read_text())
            if cfg.get("r") != self.cfg.lora_r or cfg.get("lora_alpha") != self.cfg.lora_alpha:
                raise TrainingError(
                    f"{folder}: adapter has r={cfg.get('r')} alpha={cfg.get('lora_alpha')}, "
                    f"this config r={self.cfg.lora_r} alpha={self.cfg.lora_alpha}"
                )
            adapter = load_file(str(adapter_file))
            depth = self.student_depth or base_depth(self.inner)
            saved = (
                json.loads((folder / CONFIG_FILE).read_text()).get("num_layers")
                if (folder / CONFIG_FILE).is_file()
                else None
            )
            if saved is not None and saved < depth:
                raise TrainingError(
                    f"{folder} is a {saved}-layer encoder; it cannot start a {depth}-layer student "
                    "(set model.init_from to an encoder of at least that depth, or to null)"
                )
            # a deeper encoder starts a shallow student: its memory tokens and its first L layers' LoRA
            kept = {
                k: v for k, v in adapter.items() if (layer_of(k) is None or layer_of(k) < depth)
            }
            if len(kept) < len(adapter):
                log.info(
                    "%s: keeping the LoRA of its first %d layers (%d of %d tensors)",
                    folder,
                    depth,
                    len(kept),
                    len(adapter),
                )
            tensors.update(kept)
            self.load_state_tensors(tensors, where=str(folder))
        else:  # an untrained encoder folder: memory tokens only
            with torch.no_grad():
                self.memory.copy_(tensors["memory"].to(self.memory.device, self.memory.dtype))

    @property
    def device(self) -> torch.device:
        return self.memory.device

    @property
    def hidden_size(self) -> int:
        return int(self.memory.shape[1])

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ student (encoder)
    @property
    def student(self) -> nn.Module:
        """The transformer the student runs: ``inner``, or its first L layers (with the LoRA)."""
        return self.peft.get_base_model()

    def student_hidden(self, token_ids: Sequence[Sequence[int]]):
        """Bidirectional, adapter on, the student's L layers: (hidden (B, T, H), memory_mask (B, T))."""
        inputs, attention, mem_mask = memory_inputs(
            self.inner.get_input_embeddings(), self.memory, token_ids, self.pad_id
        )
        hidden = self.student(
            inputs_embeds=inputs, attention_mask=attention, is_causal=False
        ).last_hidden_state
        return hidden, mem_mask

    def embed(self, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unnormalised embeddings (B, H): mean of the memory states, as compsearch computes them."""
        return self.by_chunks(
            [len(t) for t in token_ids], lambda idx: self._embed([token_ids[i] for i in idx])
        )

    def memory_states(self, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """The k memory hidden states (B, k, H) in order."""
        return self.by_chunks(
            [len(t) for t in token_ids], lambda idx: self._memory([token_ids[i] for i in idx])
        )

    def _embed(self, token_ids):
        hidden, mem_mask = self.student_hidden(token_ids)
        return pool_memory(hidden, mem_mask)

    def _memory(self, token_ids):
        hidden, mem_mask = self.student_hidden(token_ids)
        return hidden[mem_mask].view(len(token_ids), self.memory.shape[0], hidden.shape[-1])

    def by_chunks(
        self, lengths: Sequence[int], fn, sizes: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``fn(row indices) -> tensor`` over length-sorted chunks of ``forward_chunk`` rows, results
        back in row order. ``fn`` returns one slice per row along dim 0, of ``sizes[i]`` rows each
        (default 1 per row). Sorting by length cuts padding; rows do not depend on their batch."""
        n, c = len(lengths), self.cfg.forward_chunk
        if not c or n <= c:
            return fn(list(range(n)))
        sizes = list(sizes) if sizes is not None else [1] * n
        order = sorted(range(n), key=lambda i: lengths[i])
        pieces: list = [None] * n
        for s in range(0, n, c):
            idx = order[s : s + c]
            for i, piece in zip(idx, fn(idx).split([sizes[i] for i in idx])):
                pieces[i] = piece
        return torch.cat(pieces)

    # ------------------------------------------------------------------ frozen LM (teacher / decoder)
    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner.get_input_embeddings()(ids)

    def frozen_hidden(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The original causal LM (adapter disabled, causal attention): final hidden states.

        Activation checkpointing is off for this call: its recomputation would run in the backward
        pass, after the adapter is enabled again, and so compute a different function."""
        with self.peft.disable_adapter(), self._without_checkpointing():
            return self.inner(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, is_causal=True
            ).last_hidden_state

    @contextlib.contextmanager
    def _without_checkpointing(self):
        layers = [
            m for m in self.inner.modules() if m.__dict__.get("gradient_checkpointing") is True
        ]
        for m in layers:
            m.gradient_checkpointing = False
        try:
            yield
        finally:
            for m in layers:
                m.gradient_checkpointing = True

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on selected hidden states only, in fp32."""
        out = self.lm.get_output_embeddings()(hidden).float()
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    # ------------------------------------------------------------------ text helpers
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """As ``compsearch.Encoder.tokenize`` (special tokens on, no truncation)."""
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]


def format_query(query: str, instruction: str | None) -> str:
    """A query with its task instruction, exactly as ``compsearch.Encoder`` formats queries."""
    return format_prompt(query, instruction)
