"""The training loop of every stage, in one file.

    python -m training ctkd --config cpu-small            # stage 1 (or nll / rc)
    python -m training ucl  --config cpu-small            # stage 2, continues from stage 1
    python -m training scl  --config cpu-small            # stage 3, continues from stage 2
    torchrun --nproc_per_node 8 -m training scl --config paper   # several GPUs / nodes

One optimizer step = ``batch_size`` samples = ``micro_batch_size`` per process x processes x
accumulation steps. The learning rate is a pure function of the step (linear warmup, then linear
decay), data order a pure function of (seed, position), and a checkpoint holds the learned tensors,
the AdamW state and every process's RNG state, so a resumed run continues the same loss curve.

Several processes (torchrun / accelerate launch set RANK and WORLD_SIZE): each reads its slice of
the global micro-batch, contrastive losses gather embeddings across processes, gradients are
averaged with one all-reduce per optimizer step (no DDP wrapper: the trainable parameters are a few
MB and the forward has three roles).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from compsearch.encoder import CONFIG_FILE, pick_device

from .config import PRETEXT_STAGES, TrainConfig
from .data import heldout_texts, stage_data
from .model import LLM2Comp
from .objectives import stage_loss

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"


class TrainingError(RuntimeError):
    """Training cannot go on; the message says what to change."""


# ---------------------------------------------------------------------------- processes


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Initialises torch.distributed when launched by torchrun/accelerate."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        dev = torch.device(f"cuda:{torch.cuda.current_device()}") if (
            torch.cuda.is_available() and device in ("auto", "cuda")) else torch.device("cpu")
        return rank, world_size, dev
    return 0, 1, pick_device(device)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then linear decay to ``min_lr`` at ``max_steps``."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    span = max(1, o.max_steps - o.warmup_steps)
    frac = min(1.0, (step - o.warmup_steps) / span)
    return o.min_lr + (o.lr - o.min_lr) * (1.0 - frac)


def is_oom(exc: BaseException) -> bool:
    """CUDA OOM, or a CPU allocation failure (MemoryError / "DefaultCPUAllocator: can't allocate")."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "defaultcpuallocator"))


# ---------------------------------------------------------------------------- checkpoints


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


def _load_optimizer(opt: torch.optim.Optimizer, params: dict, tensors: dict, scalars: dict, groups: list) -> None:
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
        states = [tensors[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)


def save_checkpoint(run_dir: Path, step: int, model: LLM2Comp, opt, params: dict, extra: dict,
                    rank: int, world_size: int, keep: int) -> Path:
    """Write ``checkpoints/step_NNNNNN`` atomically (state.json is written last, by rank 0)."""
    from safetensors.torch import save_file

    final = run_dir / CKPT_DIR / f"step_{step:06d}"
    tmp = run_dir / CKPT_DIR / f".step_{step:06d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    save_file(_rng_state(), str(tmp / f"rng_rank{rank}.safetensors"))
    if rank == 0:
        save_file(model.state_tensors(), str(tmp / MODEL_FILE))
        tensors, scalars = _optimizer_tensors(opt, params)
        save_file(tensors, str(tmp / OPTIM_FILE))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        state = {"step": step, "world_size": world_size, "optimizer_scalars": scalars, "param_groups": groups,
                 "python_random": random.getstate(), "numpy_random": _np_state(), **extra}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))
    _barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        (run_dir / CKPT_DIR / "latest").write_text(final.name + "\n")
        if keep:
            done = sorted(p for p in (run_dir / CKPT_DIR).glob("step_*") if (p / STATE_FILE).is_file())
            for old in done[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def find_checkpoint(run_dir: Path) -> Path | None:
    ckpts = run_dir / CKPT_DIR
    latest = ckpts / "latest"
    if latest.is_file():
        p = ckpts / latest.read_text().strip()
        if (p / STATE_FILE).is_file():
            return p
    done = sorted(p for p in ckpts.glob("step_*") if (p / STATE_FILE).is_file()) if ckpts.is_dir() else []
    return done[-1] if done else None


def load_checkpoint(path: Path, model: LLM2Comp, opt, params: dict, rank: int, world_size: int) -> dict:
    from safetensors.torch import load_file

    state = json.loads((path / STATE_FILE).read_text())
    model.load_state_tensors(load_file(str(path / MODEL_FILE)), where=str(path))
    _load_optimizer(opt, params, load_file(str(path / OPTIM_FILE)), state["optimizer_scalars"],
                    state["param_groups"])
    rng_file = path / f"rng_rank{rank}.safetensors"
    if state.get("world_size") != world_size or not rng_file.is_file():
        log.warning("%s was written by %s processes, this run has %d: RNG streams restart, the curve "
                    "will not match an uninterrupted run exactly", path, state.get("world_size"), world_size)
    else:
        _set_rng_state(load_file(str(rng_file)))
    random.setstate(_to_tuple(state["python_random"]))
    np.random.set_state(tuple(state["numpy_random"][:1]) + (np.asarray(state["numpy_random"][1], dtype=np.uint32),)
                        + tuple(state["numpy_random"][2:]))
    return state


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


def _barrier():
    if dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------- stage continuation


def resolve_init(path: str) -> tuple[str, Path]:
    """("encoder", folder) or ("checkpoint", folder) for a previous stage's run dir / export / checkpoint."""
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
    raise TrainingError(f"model.init_from={path}: no encoder folder, run dir or checkpoint there "
                        "(run the previous stage first, or set model.init_from=null to start from the base)")


def previous_stages(kind: str, folder: Path) -> list[dict]:
    if kind == "encoder":
        training = json.loads((folder / CONFIG_FILE).read_text()).get("training") or {}
        return list(training.get("stages", []))
    state = json.loads((folder / STATE_FILE).read_text())
    return list(state.get("previous_stages", [])) + ([state["stage_record"]] if "stage_record" in state else [])


# ---------------------------------------------------------------------------- the loop


def _metrics_reset(path: Path, upto_step: int) -> None:
    """Keep only the rows of steps already covered by the checkpoint we resume from."""
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
    path.write_text("".join(k + "\n" for k in keep))


def out_of_time(elapsed: float, max_minutes: float, world_size: int, device) -> bool:
    """Whether the time budget is spent; with several processes, rank 0's clock decides for all."""
    if not max_minutes or max_minutes <= 0:
        return False
    over = elapsed >= 60.0 * max_minutes
    if world_size > 1:
        flag = torch.tensor([1.0 if over else 0.0], device=device)
        dist.broadcast(flag, 0)
        over = bool(flag.item())
    return over


def train(cfg: TrainConfig, *, resume: str = "auto", stop_after: int | None = None) -> dict:
    """Run (or resume) one stage. ``resume``: "auto" (latest checkpoint of this run, if any), "never"
    or a checkpoint path. ``stop_after``: stop (with a checkpoint) after that many total steps, as an
    interruption would; used by the resume test. Returns a summary dict."""
    cfg.validate()
    rank, world_size, device = setup_distributed(cfg.device)
    if device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    accum = cfg.accumulation(world_size)
    micro_bs = cfg.micro_batch(world_size)
    run_dir = cfg.run_dir
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    started = time.time()

    torch.manual_seed(cfg.seed)  # the same LoRA initialisation on every process
    model = LLM2Comp.from_config(cfg.model, device=device, precision=cfg.precision,
                                 gradient_checkpointing=cfg.gradient_checkpointing)
    prev: list[dict] = []
    init_from = cfg.model.init_from.format(name=cfg.name) if cfg.model.init_from else None
    if init_from:
        kind, folder = resolve_init(init_from)
        if kind == "encoder":
            model.load_encoder_folder(folder)
        else:
            from safetensors.torch import load_file
            model.load_state_tensors(load_file(str(folder / MODEL_FILE)), where=str(folder))
        prev = previous_stages(kind, folder)
        log.info("continuing from %s (%s)", folder, kind)
    torch.manual_seed(cfg.seed + 1_000_003 * rank)  # dropout streams differ per process

    data = stage_data(cfg, model.tokenize)
    params = model.trainable()
    if not params:
        raise TrainingError("nothing to train: no LoRA parameters and model.train_memory is false")
    o = cfg.optim
    opt = torch.optim.AdamW(list(params.values()), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                            weight_decay=o.weight_decay)

    step, elapsed_before = 0, 0.0
    ckpt = None if resume == "never" else (find_checkpoint(run_dir) if resume == "auto" else Path(resume))
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt, params, rank, world_size)
        step, elapsed_before = int(state["step"]), float(state.get("elapsed", 0.0))
        log.info("resumed from %s at step %d", ckpt, step)
    elif resume == "never" and rank == 0 and (run_dir / CKPT_DIR).is_dir():
        shutil.rmtree(run_dir / CKPT_DIR)
    metrics_path = run_dir / METRICS_FILE
    if rank == 0:
        _metrics_reset(metrics_path, step)

    precision = "bf16" if model.autocast_dtype is not None else "fp32"
    stage_record = {
        "stage": cfg.stage, "objective": cfg.stage, "base_model": cfg.model.base, "seed": cfg.seed,
        "max_steps": o.max_steps, "batch_size": o.batch_size, "micro_batch_size": micro_bs,
        "world_size": world_size, "lr": o.lr, "warmup_steps": o.warmup_steps, "weight_decay": o.weight_decay,
        "grad_clip": o.grad_clip, "temperature": cfg.temperature if cfg.stage not in PRETEXT_STAGES else None,
        "precision": precision, "lora": {"r": cfg.model.lora_r, "alpha": cfg.model.lora_alpha,
                                         "dropout": cfg.model.lora_dropout, "targets": cfg.model.lora_targets},
        "attention_dropout": cfg.model.attention_dropout, "train_memory": cfg.model.train_memory,
        "init_from": init_from, "data": data.provenance(), "items": len(data),
    }

    def stage_so_far(step: int, stopped: str | None) -> dict:
        rec = {**stage_record, "steps": step, "samples": step * per_step}
        if stopped:
            rec["stopped_early"] = f"{stopped} ({o.max_minutes:g} min)"
        return rec

    log.info("stage %s: %d items, %d trainable tensors (%.2fM values), %d x %d micro-batches/step, %s, %s",
             cfg.stage, len(data), len(params), sum(p.numel() for p in params.values()) / 1e6, accum,
             micro_bs, precision, device)

    model.train()
    progress = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm
        progress = tqdm(total=o.max_steps, initial=step, desc=cfg.stage, dynamic_ncols=True)
    last = min(o.max_steps, stop_after) if stop_after else o.max_steps
    per_step = o.batch_size
    t_last = time.time()
    stopped = None
    try:
        while step < last:
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            totals: dict[str, float] = {}
            tokens = 0
            for micro in range(accum):
                start = (step * accum + micro) * micro_bs * world_size + rank * micro_bs
                batch = data.batch_at(start, micro_bs)
                tokens += batch.tokens
                try:
                    with model.autocast():
                        loss, stats = stage_loss(model, batch, cfg.stage, cfg.temperature)
                    (loss / accum).backward()
                except (RuntimeError, MemoryError) as exc:
                    if not is_oom(exc):
                        raise
                    raise TrainingError(_oom_message(batch, cfg, device, step, world_size)) from None
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach()) / accum
                for k, v in stats.items():
                    if isinstance(v, float):
                        totals[k] = totals.get(k, 0.0) + v / accum
                    else:
                        totals[k] = v
            for p in params.values():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in params.values()]
            if world_size > 1:
                flat = torch.cat([g.reshape(-1).float() for g in grads])
                dist.all_reduce(flat)
                flat /= world_size
                offset = 0
                for p, g in zip(params.values(), grads):
                    n = g.numel()
                    p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
                    offset += n
                loss_t = torch.tensor([totals["loss"]], device=flat.device)
                dist.all_reduce(loss_t)
                totals["loss"] = float(loss_t) / world_size
            if o.grad_clip and o.grad_clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), o.grad_clip))
            else:
                grad_norm = float(torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(p.grad.float()) for p in params.values()])))
            if not math.isfinite(totals["loss"]):
                raise TrainingError(f"loss is {totals['loss']} at step {step + 1}: lower optim.lr, "
                                    "or set precision=fp32")
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            now = time.time()
            row = {"step": step, "lr": lr, "grad_norm": grad_norm, "samples": step * per_step,
                   "tokens": tokens * world_size, "sec": round(now - t_last, 4), **totals}
            if rank == 0:
                if step % cfg.log_every == 0 or step == last:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{totals['loss']:.4f}", lr=f"{lr:.2e}")
            if step % cfg.save_every == 0 or step == last:
                save_checkpoint(run_dir, step, model, opt, params,
                                {"elapsed": elapsed_before + time.time() - started, "config": cfg.to_dict(),
                                 "stage_record": stage_so_far(step, None), "previous_stages": prev},
                                rank, world_size, cfg.keep_checkpoints)
            t_last = time.time()  # a step's seconds exclude checkpoint writing
            if step < last and out_of_time(elapsed_before + t_last - started, o.max_minutes, world_size, device):
                stopped = "time budget"
                log.warning("stage %s: time budget of %g min reached after %d of %d steps; ending the stage",
                            cfg.stage, o.max_minutes, step, o.max_steps)
                save_checkpoint(run_dir, step, model, opt, params,
                                {"elapsed": elapsed_before + time.time() - started, "config": cfg.to_dict(),
                                 "stage_record": stage_so_far(step, stopped), "previous_stages": prev},
                                rank, world_size, cfg.keep_checkpoints)
                break
    finally:
        if progress is not None:
            progress.close()

    wall = elapsed_before + time.time() - started
    complete = step >= o.max_steps or stopped is not None
    summary = {"stage": cfg.stage, "run_dir": str(run_dir), "steps": step, "finished": complete,
               "wall_seconds": round(wall, 1), "items": len(data)}
    if stopped:
        summary["stopped_early"] = stopped
    if complete and rank == 0:
        record = {**stage_so_far(step, stopped), "wall_seconds": round(wall, 1),
                  "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}

        from .export import export_encoder, git_commit
        training = {"recipe": "llm2comp", "git_commit": git_commit(), "stages": prev + [record]}
        if cfg.export:
            summary["encoder"] = str(export_encoder(model, run_dir / "encoder", query_prompt=cfg.data.query_prompt,
                                                    training=training))
        if cfg.diagnostics:
            summary["diagnostics"] = run_diagnostics(model, cfg, data, run_dir / "diagnostics")
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _barrier()
    return summary


def _oom_message(batch, cfg: TrainConfig, device, step: int, world_size: int) -> str:
    rows = getattr(batch, "context", None) or getattr(batch, "texts", None) or getattr(batch, "queries", [])
    longest = max((len(r) for r in rows), default=0)
    return (f"a micro-batch of {len(batch)} samples ({batch.tokens} tokens, longest text {longest} tokens) "
            f"does not fit in {device} memory at step {step + 1}. Lower optim.micro_batch_size "
            f"(now {cfg.optim.micro_batch_size}; optim.batch_size={cfg.optim.batch_size} is kept by gradient "
            f"accumulation), lower model.max_length (now {cfg.model.max_length}) or "
            f"data.max_continuation_tokens, or set gradient_checkpointing=true"
            + (" (contrastive stages: fewer in-batch negatives per micro-batch)" if cfg.stage in ("ucl", "scl") else ""))


def run_diagnostics(model: LLM2Comp, cfg: TrainConfig, data, out_dir: Path) -> dict:
    """Spectrum + memory correlation of the held-out texts (or, lacking those, training items)."""
    from . import diagnostics as D

    texts = heldout_texts(cfg)
    if texts:
        ids = [t[: cfg.model.max_length] for t in model.tokenize(texts)]
        source = "heldout"
    else:
        store = getattr(data, "store", None) or getattr(data, "positives")
        ids = [store[i] for i in range(min(len(store), cfg.data.heldout_limit))]
        source = "training items (no data.heldout configured)"
    if len(ids) < 2:
        return {"skipped": "fewer than 2 texts"}
    was_training = model.training
    model.eval()
    try:
        with model.autocast():
            states = D.collect_states(model.memory_states, ids, batch_size=max(1, cfg.optim.micro_batch_size or 16))
    finally:
        model.train(was_training)
    result = D.analyze(states)
    result.update(source=source, texts=len(ids), stage=cfg.stage)
    result["files"] = D.save(result, out_dir, cfg.stage)
    sp, mc = result["spectrum"], result["memory_correlation"]
    return {"above_1pct": sp["above_1pct"], "entropy_rank": round(sp["entropy_rank"], 2),
            "memory_mean_offdiag": mc["mean_offdiag"], "dir": str(out_dir), "source": source}
