"""Write a trained student as a compsearch encoder folder.

Layout (what ``compsearch.Encoder.load(folder)`` reads):

- ``compsearch_encoder.json``: ``EncoderConfig`` with base_model, base_fingerprint, k, max_length,
  query_prompt and ``training`` provenance (stages, data sources with versions and counts, steps,
  wall time, seed, git commit);
- ``memory.safetensors``: key ``memory``, fp32, shape (k, hidden);
- ``adapter/``: peft ``save_pretrained`` of the LoRA on the inner transformer (loads onto
  ``AutoModel``); fp32 by default, ``adapter_dtype="bfloat16"`` halves it (~9 MB for SmolLM2-135M).

``python -m training export RUN_DIR|CHECKPOINT OUT`` exports any checkpoint of a run (e.g. the
best SCL step) without training.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from compsearch.encoder import ADAPTER_DIR, CONFIG_FILE, MEMORY_FILE, EncoderConfig
from compsearch.fsutil import atomic_replace_dir
from compsearch.models import base_fingerprint

from .model import LLM2Comp, base_spec


def git_commit() -> str | None:
    """The training code's commit (``+dirty`` when the working tree has changes)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        if not head:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def export_encoder(model: LLM2Comp, out: str | Path, *, query_prompt: str | None, training: dict,
                   adapter_dtype: str = "float32") -> Path:
    """Write the encoder folder atomically; returns its path."""
    from safetensors.torch import load_file, save_file

    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        cfg = EncoderConfig(base_model=base_spec(model.cfg.base), base_fingerprint=base_fingerprint(model.base_folder),
                            num_memory_tokens=model.cfg.num_memory_tokens, max_length=model.cfg.export_max_length,
                            query_prompt=query_prompt, training=training)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        save_file({"memory": model.memory.detach().float().cpu().contiguous()}, str(tmp / MEMORY_FILE))
        adapter = tmp / ADAPTER_DIR
        model.peft.save_pretrained(str(adapter))
        (adapter / "README.md").unlink(missing_ok=True)  # peft's template card; the encoder has its own
        weights = adapter / "adapter_model.safetensors"
        if adapter_dtype not in ("float32", "fp32"):
            dt = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16}[adapter_dtype]
            tensors = {k: v.to(dt).contiguous() for k, v in load_file(str(weights)).items()}
            save_file(tensors, str(weights), metadata={"format": "pt"})
        conf = json.loads((adapter / "adapter_config.json").read_text())
        conf["base_model_name_or_path"] = cfg.base_model  # not this machine's cache path
        (adapter / "adapter_config.json").write_text(json.dumps(conf, indent=2) + "\n")
        atomic_replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def folder_size(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export_checkpoint(source: str | Path, out: str | Path, *, adapter_dtype: str = "float32") -> Path:
    """Export a run's latest checkpoint (or a given checkpoint folder) without training."""
    from safetensors.torch import load_file

    from .config import TrainConfig
    from .train import MODEL_FILE, STATE_FILE, TrainingError, find_checkpoint

    src = Path(source).expanduser()
    ckpt = src if (src / STATE_FILE).is_file() else find_checkpoint(src)
    if ckpt is None:
        raise TrainingError(f"{source}: no checkpoint (a folder with {STATE_FILE}) there")
    state = json.loads((ckpt / STATE_FILE).read_text())
    cfg = TrainConfig(**state["config"])
    cfg.model.init_from = None
    model = LLM2Comp.from_config(cfg.model, device="cpu", precision="fp32")
    model.load_state_tensors(load_file(str(ckpt / MODEL_FILE)), where=str(ckpt))
    record = {**state.get("stage_record", {}), "steps": state["step"], "checkpoint": ckpt.name,
              "wall_seconds": round(float(state.get("elapsed", 0.0)), 1)}
    record.setdefault("samples", state["step"] * cfg.optim.batch_size)  # checkpoints written before it was recorded
    training = {"recipe": "llm2comp", "git_commit": git_commit(),
                "stages": list(state.get("previous_stages", [])) + [record]}
    return export_encoder(model, out, query_prompt=cfg.data.query_prompt, training=training,
                          adapter_dtype=adapter_dtype)
