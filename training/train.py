"""The training loop of every stage, in one function that reads top to bottom.

    python -m training ctkd --config cpu-small            # stage 1 (or nll / rc)
    python -m training ucl  --config cpu-small            # stage 2, continues from stage 1
    python -m training scl  --config cpu-small            # stage 3, continues from stage 2
    torchrun --nproc_per_node 8 -m training scl --config paper   # several GPUs / nodes

One optimizer step = ``batch_size`` samples = ``micro_batch_size`` per process x processes x
accumulation steps. The learning rate is a pure function of the step (linear warmup, then linear
decay), data order a pure function of (seed, position), and a checkpoint (``checkpoint.py``) holds
the learned tensors, the AdamW state and every process's RNG state, so a resumed run continues the
same loss curve. Several processes: each reads its slice of the global micro-batch, contrastive
losses gather embeddings across processes (``objectives.py``), gradients are averaged once per step
(``processes.py``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from compsearch.fsutil import atomic_write_text

from .checkpoint import (
    CKPT_DIR,
    METRICS_FILE,
    MODEL_FILE,
    check_init_fingerprint,
    find_checkpoint,
    load_checkpoint,
    previous_stages,
    resolve_init,
    save_checkpoint,
    truncate_metrics,
)
from .config import PRETEXT_STAGES, TrainConfig
from .data import stage_data
from .diagnostics import after_stage
from .errors import TrainingError, is_oom, oom_message
from .export import export_encoder, git_commit
from .model import LLM2Comp
from .objectives import stage_loss
from .processes import average_gradients, barrier, out_of_time, setup_distributed

log = logging.getLogger(__name__)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then linear decay to ``min_lr`` at ``max_steps``."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    span = max(1, o.max_steps - o.warmup_steps)
    frac = min(1.0, (step - o.warmup_steps) / span)
    return o.min_lr + (o.lr - o.min_lr) * (1.0 - frac)


def train(cfg: TrainConfig, *, resume: str = "auto", stop_after: int | None = None) -> dict:
    """Run (or resume) one stage. ``resume``: "auto" (latest checkpoint of this run, if any), "never"
    or a checkpoint path. ``stop_after``: stop (with a checkpoint) after that many total steps, as an
    interruption would; used by the resume test. Returns a summary dict."""
    # -------------------------------------------------------------- processes, run folder
    cfg.validate()
    rank, world_size, device = setup_distributed(cfg.device)
    if device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    accum, micro_bs = cfg.accumulation(world_size), cfg.micro_batch(world_size)
    o = cfg.optim
    run_dir = cfg.run_dir
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    started = time.time()

    # -------------------------------------------------------------- model, continued from the previous stage
    torch.manual_seed(cfg.seed)  # the same LoRA initialisation on every process
    model = LLM2Comp.from_config(
        cfg.model,
        device=device,
        precision=cfg.precision,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    prev: list[dict] = []
    init_from = cfg.model.init_from.format(name=cfg.name) if cfg.model.init_from else None
    if init_from:
        kind, folder = resolve_init(init_from)
        check_init_fingerprint(kind, folder, cfg.model.init_fingerprint)
        if kind == "encoder":
            model.load_encoder_folder(folder)
        else:
            from safetensors.torch import load_file

            model.load_state_tensors(load_file(str(folder / MODEL_FILE)), where=str(folder))
        prev = previous_stages(kind, folder)
        log.info("continuing from %s (%s)", folder, kind)
    torch.manual_seed(cfg.seed + 1_000_003 * rank)  # dropout streams differ per process

    # -------------------------------------------------------------- data, optimizer
    data = stage_data(cfg, model.tokenize)
    params = model.trainable()
    if not params:
        raise TrainingError("nothing to train: no LoRA parameters and model.train_memory is false")
    opt = torch.optim.AdamW(
        list(params.values()), lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
    )

    # -------------------------------------------------------------- resume
    step, elapsed_before = 0, 0.0
    ckpt = (
        None
        if resume == "never"
        else (find_checkpoint(run_dir) if resume == "auto" else Path(resume))
    )
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt, params, rank, world_size)
        step, elapsed_before = int(state["step"]), float(state.get("elapsed", 0.0))
        log.info("resumed from %s at step %d", ckpt, step)
    elif resume == "never" and rank == 0 and (run_dir / CKPT_DIR).is_dir():
        shutil.rmtree(run_dir / CKPT_DIR)
    metrics_path = run_dir / METRICS_FILE
    if rank == 0:
        truncate_metrics(metrics_path, step)

    precision = "bf16" if model.autocast_dtype is not None else "fp32"
    record = stage_record(
        cfg,
        init_from=init_from,
        precision=precision,
        micro_bs=micro_bs,
        world_size=world_size,
        data=data,
    )

    def save(step: int, stopped: str | None = None) -> None:
        rec = {**record, "steps": step, "samples": step * o.batch_size}
        if stopped:
            rec["stopped_early"] = f"{stopped} ({o.max_minutes:g} min)"
        save_checkpoint(
            run_dir,
            step,
            model,
            opt,
            params,
            {
                "elapsed": elapsed_before + time.time() - started,
                "config": cfg.to_dict(),
                "stage_record": rec,
                "previous_stages": prev,
            },
            rank,
            world_size,
            cfg.keep_checkpoints,
        )

    log.info(
        "stage %s: %d items, %d trainable tensors (%.2fM values), %d x %d micro-batches/step, %s, %s, "
        "student depth %s",
        cfg.stage,
        len(data),
        len(params),
        sum(p.numel() for p in params.values()) / 1e6,
        accum,
        micro_bs,
        precision,
        device,
        model.student_depth,
    )

    # -------------------------------------------------------------- the loop
    model.train()
    progress = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm

        progress = tqdm(total=o.max_steps, initial=step, desc=cfg.stage, dynamic_ncols=True)
    last = min(o.max_steps, stop_after) if stop_after else o.max_steps
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
                    raise TrainingError(oom_message(batch, cfg, device, step, world_size)) from None
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach()) / accum
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v / accum if isinstance(v, float) else v
            totals["loss"] = average_gradients(params, totals["loss"], world_size)
            if o.grad_clip and o.grad_clip > 0:
                grad_norm = float(
                    torch.nn.utils.clip_grad_norm_(list(params.values()), o.grad_clip)
                )
            else:
                grad_norm = float(
                    torch.linalg.vector_norm(
                        torch.stack(
                            [torch.linalg.vector_norm(p.grad.float()) for p in params.values()]
                        )
                    )
                )
            if not math.isfinite(totals["loss"]):
                raise TrainingError(
                    f"loss is {totals['loss']} at step {step + 1}: lower optim.lr, "
                    "or set precision=fp32"
                )
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1

            now = time.time()
            row = {
                "step": step,
                "lr": lr,
                "grad_norm": grad_norm,
                "samples": step * o.batch_size,
                "tokens": tokens * world_size,
                "sec": round(now - t_last, 4),
                **totals,
            }
            if rank == 0:
                if step % cfg.log_every == 0 or step == last:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{totals['loss']:.4f}", lr=f"{lr:.2e}")
            if step % cfg.save_every == 0 or step == last:
                save(step)
            t_last = time.time()  # a step's seconds exclude checkpoint writing
            if step < last and out_of_time(
                elapsed_before + t_last - started, o.max_minutes, world_size, device
            ):
                stopped = "time budget"
                log.warning(
                    "stage %s: time budget of %g min reached after %d of %d steps; ending the stage",
                    cfg.stage,
                    o.max_minutes,
                    step,
                    o.max_steps,
                )
                save(step, stopped)
                break
    finally:
        if progress is not None:
            progress.close()

    # -------------------------------------------------------------- end of stage: record, export, diagnostics
    wall = elapsed_before + time.time() - started
    complete = step >= o.max_steps or stopped is not None
    summary = {
        "stage": cfg.stage,
        "run_dir": str(run_dir),
        "steps": step,
        "finished": complete,
        "wall_seconds": round(wall, 1),
        "items": len(data),
    }
    if stopped:
        summary["stopped_early"] = stopped
    if complete and rank == 0:
        done = {
            **record,
            "steps": step,
            "samples": step * o.batch_size,
            "wall_seconds": round(wall, 1),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if stopped:
            done["stopped_early"] = f"{stopped} ({o.max_minutes:g} min)"
        training = {"recipe": "llm2comp", "git_commit": git_commit(), "stages": prev + [done]}
        if cfg.export:
            summary["encoder"] = str(
                export_encoder(
                    model,
                    run_dir / "encoder",
                    query_prompt=cfg.data.query_prompt,
                    training=training,
                )
            )
        if cfg.diagnostics:
            summary["diagnostics"] = after_stage(model, cfg, data, run_dir / "diagnostics")
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    barrier()
    return summary


def stage_record(
    cfg: TrainConfig, *, init_from, precision: str, micro_bs: int, world_size: int, data
) -> dict:
    """What this stage is, as its checkpoints and the exported encoder's provenance record it."""
    o, m = cfg.optim, cfg.model
    return {
        "stage": cfg.stage,
        "objective": cfg.stage,
        "base_model": m.base,
        "num_layers": m.num_layers,
        "seed": cfg.seed,
        "max_steps": o.max_steps,
        "batch_size": o.batch_size,
        "micro_batch_size": micro_bs,
        "world_size": world_size,
        "lr": o.lr,
        "warmup_steps": o.warmup_steps,
        "weight_decay": o.weight_decay,
        "grad_clip": o.grad_clip,
        "temperature": cfg.temperature if cfg.stage not in PRETEXT_STAGES else None,
        "precision": precision,
        "lora": {
            "r": m.lora_r,
            "alpha": m.lora_alpha,
            "dropout": m.lora_dropout,
            "targets": m.lora_targets,
        },
        "attention_dropout": m.attention_dropout,
        "train_memory": m.train_memory,
        "init_from": init_from,
        "data": data.provenance(),
        "items": len(data),
    }
