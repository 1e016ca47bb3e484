"""The transformer under an encoder: device and dtype choice, depth, and where weights come from.

Split from ``encoder`` because loading is its own concern: which layers (``num_layers``), in which
dtype (bf16 only where the hardware computes it natively), read from the base model or from the
merged-weights cache, and with which tokenizer (the light ``tokenizers`` one when the model has a
``tokenizer.json``; see ``fastpath``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import CompsearchError
from .fastpath import LightTokenizer


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 where the hardware runs it natively (GPUs, CPUs with AMX/AVX512-BF16), else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in (None, "auto"):
        try:
            return {
                "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16,
                "float32": torch.float32,
                "fp32": torch.float32,
                "float16": torch.float16,
                "fp16": torch.float16,
            }[dtype]
        except KeyError:
            raise CompsearchError(f"unknown dtype {dtype!r}; use bfloat16 or float32") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    cpu = getattr(torch, "cpu", None)
    native = False
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        try:
            native = native or bool(getattr(cpu, probe)())
        except Exception:
            pass
    return torch.bfloat16 if native else torch.float32


def truncate_config(cfg, num_layers: int | None):
    """Make a transformers config describe only the first ``num_layers`` layers (None: all).

    Refuses a depth the base model does not have with one line.
    """
    if num_layers is None:
        return cfg
    total = int(cfg.num_hidden_layers)
    if num_layers < 1 or num_layers > total:
        raise CompsearchError(
            f"num_layers={num_layers} is out of range: the base model has "
            f"{total} layers (use 1..{total})"
        )
    cfg.num_hidden_layers = num_layers
    for key in ("layer_types",):  # per-layer lists (e.g. Gemma 3's sliding/full attention pattern)
        value = getattr(cfg, key, None)
        if isinstance(value, list) and len(value) == total:
            setattr(cfg, key, value[:num_layers])
    return cfg


def _load_backbone(
    folder: Path, device, dtype, num_layers: int | None = None, weights: Path | None = None
):
    """The transformer without its LM head, bidirectional, in inference mode.

    ``weights``: a folder with the (merged, possibly truncated) backbone to read instead of the
    base model's weights; the architecture always comes from the base model's config.
    """
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    model = _light_model(folder, weights, num_layers, dev, dt) if weights is not None else None
    if model is None:
        import transformers
        from transformers import AutoConfig, AutoModel

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        cfg = truncate_config(AutoConfig.from_pretrained(folder), num_layers)
        cfg.is_causal = False
        model = AutoModel.from_pretrained(weights or folder, config=cfg, dtype=dt).to(dev).eval()
    tokenizer = LightTokenizer.from_folder(folder)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _light_model(folder: Path, weights: Path, num_layers: int | None, device, dtype):
    """The merged weights on ``compsearch.llama`` (no transformers import) when the base is a plain
    Llama and the device is the CPU (where cold start matters and where it was measured); None
    otherwise. Set ``COMPSEARCH_TRANSFORMERS=1`` to always use transformers."""
    import os
    from types import SimpleNamespace

    from . import llama

    if os.environ.get("COMPSEARCH_TRANSFORMERS") == "1" or torch.device(device).type != "cpu":
        return None
    try:
        cfg = llama.read_config(folder)
    except (OSError, ValueError):
        return None
    if not llama.supports(cfg):
        return None
    truncate_config(
        SimpleNamespace(num_hidden_layers=cfg["num_hidden_layers"]), num_layers
    )  # range check
    return llama.load(weights, cfg, num_layers, device, dtype)
