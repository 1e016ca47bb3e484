"""A bidirectional Llama forward in plain torch, for reading a merged encoder without transformers.

Why: a ``compsearch query`` process spends most of its start importing transformers' Llama (which
pulls in torch._dynamo and torch.distributed), several times what importing torch and reading the
merged weights cost (see benchmarks/README.md, throughput_depth). The encoder needs one forward
pass with no cache, no generation and no training, so when the merged-weights cache holds a plain
Llama (default RoPE, no biases, SiLU MLP: SmolLM2 and its kind) the encoder runs this module
instead. Anything else, and every training path, uses transformers. ``tests/test_llama.py`` checks
it against transformers' ``LlamaModel`` on random weights, with padding, in fp32 and bf16.

The module mirrors the parts of ``transformers.LlamaModel`` the encoder touches: ``config`` with
``hidden_size``/``num_hidden_layers``/``is_causal``, ``layers``, ``get_input_embeddings()``,
``dtype``/``device``, and ``forward(input_ids | inputs_embeds, attention_mask, is_causal)``
returning an object with ``last_hidden_state``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .npquery import supports  # noqa: F401 (the one test of which Llamas both forwards reproduce)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = (
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
        )
        self.q_proj = nn.Linear(c.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, is_causal):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if is_causal:
            causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            mask = causal if mask is None else mask & causal
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask, is_causal):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, is_causal)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaEncoderModel(nn.Module):
    """Llama body (embeddings, L layers, final norm), bidirectional unless ``is_causal=True``."""

    def __init__(self, config: SimpleNamespace):
        super().__init__()
        self.config = config
        # an explicit (empty) weight skips nn.Embedding's random init, which on the meta device
        # would import torch._dynamo (seconds) for values that are overwritten anyway
        self.embed_tokens = nn.Embedding(
            config.vocab_size,
            config.hidden_size,
            _weight=torch.empty(config.vocab_size, config.hidden_size),
        )
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(
        self, input_ids=None, inputs_embeds=None, attention_mask=None, is_causal: bool = False
    ):
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, n, _ = x.shape
        dim = self.config.head_dim  # RoPE angles in fp32 whatever the weights' dtype
        inv_freq = 1.0 / (
            self.config.rope_theta ** (torch.arange(0, dim, 2, device=x.device).float() / dim)
        )
        freqs = torch.outer(torch.arange(n, device=x.device, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype)[None, None], emb.sin().to(x.dtype)[None, None]
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :].expand(b, 1, n, n)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, is_causal)
        return SimpleNamespace(last_hidden_state=self.norm(x))


def read_config(folder: Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def load(
    weights_folder: Path, base_cfg: dict, num_layers: int | None, device, dtype
) -> LlamaEncoderModel:
    """The merged backbone in ``weights_folder`` (safetensors), architecture from the base config."""
    from safetensors.torch import load_file

    rope = base_cfg.get("rope_parameters") or base_cfg.get("rope_scaling") or {}
    heads = base_cfg["num_attention_heads"]
    config = SimpleNamespace(
        model_type="llama",
        vocab_size=base_cfg["vocab_size"],
        hidden_size=base_cfg["hidden_size"],
        intermediate_size=base_cfg["intermediate_size"],
        num_hidden_layers=num_layers or base_cfg["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=base_cfg.get("num_key_value_heads") or heads,
        head_dim=base_cfg.get("head_dim") or base_cfg["hidden_size"] // heads,
        rms_norm_eps=base_cfg.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", base_cfg.get("rope_theta", 10000.0)),
        is_causal=False,
    )
    with torch.device("meta"):
        model = LlamaEncoderModel(config)
    state = load_file(str(Path(weights_folder) / "model.safetensors"))
    model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"merged weights lack {missing[:3]}")
    return model.to(device=device, dtype=dtype).eval()
