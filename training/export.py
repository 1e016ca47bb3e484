"""Write a trained student as a compsearch encoder folder (through the library's one writer).

Layout (``compsearch.encoder.write_encoder_folder`` writes it, ``compsearch.Encoder.load`` reads it):

- ``compsearch_encoder.json``: ``EncoderConfig`` with base_model, base_fingerprint, k, max_length,
  ``num_layers`` (the student's depth; null for the full base), query_prompt and ``training``
  provenance (stages, data sources with versions and counts, steps, wall time, seed, git commit);
- ``memory.safetensors``: key ``memory``, fp32, shape (k, hidden);
- ``adapter/``: the LoRA of the student's layers as peft saves it (its adapter config, with the base
  recorded by name rather than this machine's path, and ``get_peft_model_state_dict``'s tensors), so
  it loads onto ``AutoModel`` truncated to ``num_layers``; fp32 by default, ``adapter_dtype="bfloat16"``
  halves it (~9 MB for SmolLM2-135M at full depth).

``python -m training export RUN_DIR|CHECKPOINT OUT`` exports any checkpoint of a run (e.g. the
best SCL step) without training.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from compsearch.encoder import EncoderConfig, write_encoder_folder
from compsearch.models import base_fingerprint

from .checkpoint import MODEL_FILE, STATE_FILE, find_checkpoint, read_state
from .config import TrainConfig
from .errors import TrainingError
from .model import LLM2Comp, base_spec

ADAPTER_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
}


def git_commit() -> str | None:
    """The training code's commit (``+dirty`` when the working tree has changes)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not head:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def adapter_parts(
    model: LLM2Comp, base_model: str, adapter_dtype: str = "float32"
) -> tuple[dict, dict]:
    """(adapter config, {name: tensor}) as ``PeftModel.save_pretrained`` would write them.

    The config is peft's ``to_dict()`` with sets as (sorted) lists, ``inference_mode`` on, the
    ``auto_mapping`` peft adds for a model without a task type, and ``base_model_name_or_path`` set
    to ``base_model`` (a name, not this machine's cache path); the tensors are
    ``get_peft_model_state_dict``'s, cast to ``adapter_dtype``."""
    from peft import get_peft_model_state_dict

    if adapter_dtype not in ADAPTER_DTYPES:
        raise TrainingError(
            f"adapter_dtype must be one of {', '.join(ADAPTER_DTYPES)}, not {adapter_dtype!r}"
        )
    peft_config = model.peft.peft_config["default"]
    conf = {k: sorted(v) if isinstance(v, set) else v for k, v in peft_config.to_dict().items()}
    conf["inference_mode"] = True
    conf["base_model_name_or_path"] = base_model
    if peft_config.task_type is None:
        student = type(model.student)
        conf["auto_mapping"] = {
            "base_model_class": student.__name__,
            "parent_library": student.__module__,
        }
    dt = ADAPTER_DTYPES[adapter_dtype]
    tensors = {k: v.detach().to(dt) for k, v in get_peft_model_state_dict(model.peft).items()}
    return conf, tensors


def export_encoder(
    model: LLM2Comp,
    out: str | Path,
    *,
    query_prompt: str | None,
    training: dict,
    adapter_dtype: str = "float32",
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write the encoder folder atomically; returns its path."""
    cfg = EncoderConfig(
        base_model=base_spec(model.cfg.base),
        base_fingerprint=base_fingerprint(model.base_folder),
        num_memory_tokens=model.cfg.num_memory_tokens,
        max_length=model.cfg.export_max_length,
        num_layers=model.student_depth,
        query_prompt=query_prompt,
        training=training,
    )
    return write_encoder_folder(
        out,
        cfg,
        model.memory,
        adapter_parts(model, cfg.base_model, adapter_dtype),
        extra_files=extra_files,
    )


def folder_size(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export_checkpoint(
    source: str | Path, out: str | Path, *, adapter_dtype: str = "float32"
) -> Path:
    """Export a run's latest checkpoint (or a given checkpoint folder) without training."""
    from safetensors.torch import load_file

    src = Path(source).expanduser()
    ckpt = src if (src / STATE_FILE).is_file() else find_checkpoint(src)
    if ckpt is None:
        raise TrainingError(f"{source}: no checkpoint (a folder with {STATE_FILE}) there")
    state = read_state(ckpt)
    cfg = TrainConfig.from_dict(state.get("config") or {}, f"{ckpt / STATE_FILE} [config]")
    cfg.model.init_from = None
    model = LLM2Comp.from_config(cfg.model, device="cpu", precision="fp32")
    model.load_state_tensors(load_file(str(ckpt / MODEL_FILE)), where=str(ckpt))
    record = {
        **state.get("stage_record", {}),
        "steps": state["step"],
        "checkpoint": ckpt.name,
        "wall_seconds": round(float(state.get("elapsed", 0.0)), 1),
    }
    record.setdefault(
        "samples", state["step"] * cfg.optim.batch_size
    )  # checkpoints written before it was recorded
    training = {
        "recipe": "llm2comp",
        "git_commit": git_commit(),
        "stages": list(state.get("previous_stages", [])) + [record],
    }
    return export_encoder(
        model,
        out,
        query_prompt=cfg.data.query_prompt,
        training=training,
        adapter_dtype=adapter_dtype,
    )
