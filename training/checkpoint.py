"""The checkpoint format of a training run, and where a stage continues from.

A run folder (``<out_dir>``) holds ``checkpoints/step_NNNNNN/`` folders and a ``checkpoints/latest``
pointer. A checkpoint is:

- ``model.safetensors``: every learned tensor (LoRA by peft's adapter-file names, plus ``memory``), fp32;
- ``optimizer.safetensors`` + the optimizer's scalars and param groups in ``state.json``: AdamW's state
  by parameter name, so it reloads onto a freshly built model;
- ``rng_rank<R>.safetensors``: each process's torch (and CUDA) RNG state;
- ``state.json``, written last: step, elapsed seconds, the config, the stage's provenance record, the
  previous stages' records, Python's and NumPy's RNG states.

A checkpoint is written into a temp folder and renamed into place, so a crash leaves the previous
one; ``find_checkpoint`` only returns folders whose ``state.json`` exists. Restoring model, optimizer
and every RNG stream makes a resumed run continue the same loss curve bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from compsearch.encoder import CONFIG_FILE, PACKAGED_DEFAULT
from compsearch.fsutil import atomic_write_text

from .errors import TrainingError
from .processes import barrier

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
DEFAULT_INIT = (
    "default"  # model.init_from=default: compsearch's shipped encoder (compsearch/default_model)
)


# ---------------------------------------------------------------------------- writing and reading


def save_checkpoint(
    run_dir: Path,
    step: int,
    model,
    opt,
    params: dict,
    extra: dict,
    rank: int,
    world_size: int,
    keep: int,
) -> Path:
    """Write ``checkpoints/step_NNNNNN`` atomically (state.json is written last, by rank 0)."""
    from safetensors.torch import save_file

    final = run_dir / CKPT_DIR / f"step_{step:06d}"
    tmp = run_dir / CKPT_DIR / f".step_{step:06d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    save_file(_rng_state(), str(tmp / f"rng_rank{rank}.safetensors"))
    if rank == 0:
        save_file(model.state_tensors(), str(tmp / MODEL_FILE))
        tensors, scalars = _optimizer_tensors(opt, params)
        save_file(tensors, str(tmp / OPTIM_FILE))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        state = {
            "step": step,
            "world_size": world_size,
            "optimizer_scalars": scalars,
            "param_groups": groups,
            "python_random": random.getstate(),
            "numpy_random": _np_state(),
            **extra,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))
    barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(run_dir / CKPT_DIR / "latest", final.name + "\n")
        if keep:
            done = sorted(
                p for p in (run_dir / CKPT_DIR).glob("step_*") if (p / STATE_FILE).is_file()
            )
            for old in done[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def find_checkpoint(run_dir: Path) -> Path | None:
    """The latest complete checkpoint of a run folder, or None."""
    ckpts = Path(run_dir) / CKPT_DIR
    latest = ckpts / "latest"
    if latest.is_file():
        p = ckpts / latest.read_text().strip()
        if (p / STATE_FILE).is_file():
            return p
    done = (
        sorted(p for p in ckpts.glob("step_*") if (p / STATE_FILE).is_file())
        if ckpts.is_dir()
        else []
    )
    return done[-1] if done else None


def read_state(path: Path) -> dict:
    """A checkpoint's ``state.json``."""
    try:
        return json.loads((Path(path) / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: not a readable checkpoint ({exc})") from None


def load_checkpoint(path: Path, model, opt, params: dict, rank: int, world_size: int) -> dict:
    """Restore model tensors, optimizer state and every RNG stream; returns ``state.json``."""
    from safetensors.torch import load_file

    state = read_state(path)
    model.load_state_tensors(load_file(str(path / MODEL_FILE)), where=str(path))
    _load_optimizer(
        opt,
        params,
        load_file(str(path / OPTIM_FILE)),
        state["optimizer_scalars"],
        state["param_groups"],
    )
    rng_file = path / f"rng_rank{rank}.safetensors"
    if state.get("world_size") != world_size or not rng_file.is_file():
        log.warning(
            "%s was written by %s processes, this run has %d: RNG streams restart, the curve "
            "will not match an uninterrupted run exactly",
            path,
            state.get("world_size"),
            world_size,
        )
    else:
        _set_rng_state(load_file(str(rng_file)))
    random.setstate(_to_tuple(state["python_random"]))
    np.random.set_state(
        tuple(state["numpy_random"][:1])
        + (np.asarray(state["numpy_random"][1], dtype=np.uint32),)
        + tuple(state["numpy_random"][2:])
    )
    return state


def truncate_metrics(path: Path, upto_step: int) -> None:
    """Keep only the metrics rows of steps already covered by the checkpoint we resume from."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("step", 0) <= upto_step:
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))


# ---------------------------------------------------------------------------- stage continuation


def resolve_init(path: str) -> tuple[str, Path]:
    """("encoder", folder) or ("checkpoint", folder) for a previous stage's run dir / export /
    checkpoint, or ``default`` (compsearch's shipped encoder)."""
    if path == DEFAULT_INIT:
        if (PACKAGED_DEFAULT / CONFIG_FILE).is_file():
            return "encoder", PACKAGED_DEFAULT
        raise TrainingError(
            f"model.init_from=default: no shipped encoder in {PACKAGED_DEFAULT} "
            "(set model.init_from=null to start from the base)"
        )
    p = Path(path).expanduser()
    if (p / CONFIG_FILE).is_file():
        return "encoder", p
    if (p / "encoder" / CONFIG_FILE).is_file():
        return "encoder", p / "encoder"
    if (p / MODEL_FILE).is_file():
        return "checkpoint", p
    ck = find_checkpoint(p) if p.is_dir() else None
    if ck is not None:
        return "checkpoint", ck
    raise TrainingError(
        f"model.init_from={path}: no encoder folder, run dir or checkpoint there "
        "(run the previous stage first, or set model.init_from=null to start from the base)"
    )


def check_init_fingerprint(kind: str, folder: Path, want: str | None) -> None:
    """Refuse an init encoder other than the one a config continues (``model.init_fingerprint``, a
    full sha256 or a prefix of it): a config written to continue one shipped default must not silently
    continue the next one."""
    if not want:
        return
    if kind != "encoder":
        raise TrainingError(
            f"model.init_fingerprint={want[:12]} needs an encoder folder, but {folder} is a checkpoint"
        )
    from compsearch.encoderfolder import read_fingerprint

    got = read_fingerprint(folder)
    if not got.startswith(want.lower()):
        raise TrainingError(
            f"{folder} is encoder {got[:8]}, but this config continues encoder {want[:8]}: set "
            "model.init_from to that encoder (the compsearch/default_model of the commit that shipped "
            "it), or model.init_fingerprint=null to continue this one instead"
        )


def previous_stages(kind: str, folder: Path) -> list[dict]:
    """The provenance records of the stages an encoder folder or a checkpoint went through."""
    if kind == "encoder":
        training = json.loads((folder / CONFIG_FILE).read_text()).get("training") or {}
        return list(training.get("stages", []))
    state = read_state(folder)
    return list(state.get("previous_stages", [])) + (
        [state["stage_record"]] if "stage_record" in state else []
    )


# ---------------------------------------------------------------------------- tensors <-> files


def _optimizer_tensors(opt: torch.optim.Optimizer, params: dict) -> tuple[dict, dict]:
    by_id = {id(p): name for name, p in params.items()}
    tensors, scalars = {}, {}
    for p, state in opt.state.items():
        name = by_id[id(p)]
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{name}::{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{name}::{key}"] = value
    return tensors, scalars


def _load_optimizer(
    opt: torch.optim.Optimizer, params: dict, tensors: dict, scalars: dict, groups: list
) -> None:
    names = list(params)
    state: dict = {}
    for key, value in list(tensors.items()) + list(scalars.items()):
        name, field = key.rsplit("::", 1)
        if name not in params:
            raise TrainingError(f"checkpoint optimizer state has unknown parameter {name}")
        state.setdefault(names.index(name), {})[field] = value
    saved_groups = [dict(g, params=list(range(len(names)))) for g in groups]
    opt.load_state_dict({"state": state, "param_groups": saved_groups})


def _rng_state() -> dict:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda{i}"] = s
    return out


def _set_rng_state(tensors: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [
            tensors[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in tensors
        ]
        if states:
            torch.cuda.set_rng_state_all(states)


def _np_state():
    s = np.random.get_state()
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def _json_default(o):
    if torch.is_tensor(o):
        return o.item() if o.numel() == 1 else o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
