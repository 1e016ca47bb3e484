"""Training configuration: plain dataclasses, one ``TrainConfig`` per stage.

A config *file* is either a Python module under ``training/configs/`` (or any ``.py`` path) that
defines ``config(stage: str) -> TrainConfig``, or a JSON file ``{"common": {...}, "<stage>": {...}}``
whose nested dicts override the defaults (``common`` first, then the stage's own section).
Command-line overrides are ``--set section.field=value`` (value parsed as JSON when it parses,
else taken as a string), e.g. ``--set optim.lr=3e-5 --set data.train='["a.jsonl"]'``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from compsearch.fsutil import cache_home

from .errors import TrainingError

PRETEXT_STAGES = ("ctkd", "nll", "rc")  # stage-1 objectives, same wiring
CONTRASTIVE_STAGES = ("ucl", "scl")
STAGES = PRETEXT_STAGES + CONTRASTIVE_STAGES
LORA_TARGETS = ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONFIG_DIR = Path(__file__).parent / "configs"


def default_data_dir() -> str:
    """Where ``python -m training data`` writes built training data ($COMPSEARCH_TRAIN_DATA)."""
    env = os.environ.get("COMPSEARCH_TRAIN_DATA")
    if env:
        return env
    return str(cache_home() / "training-data")


@dataclass
class ModelConfig:
    base: str = "bundled"  # "bundled", a local HF folder, or a hub id
    num_layers: int | None = (
        None  # student depth: the first L layers of the base, then its final norm
    )
    # (None: all). The teacher and decoder always run the full base.
    num_memory_tokens: int = 8
    memory_seed: int = 0  # same init as compsearch.Encoder.from_base(seed=0)
    max_length: int = 512  # text tokens the student reads (memory tokens on top)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list = field(default_factory=lambda: list(LORA_TARGETS))
    attention_dropout: float = 0.0  # authors: 0.2 in UCL (the SimCSE views)
    train_memory: bool = True  # authors freeze embeddings after stage 1
    init_from: str | None = None  # previous stage: a run dir, a checkpoint or an encoder folder
    # the fingerprint (or a prefix of it) the init_from encoder must have; None: any. A config that
    # continues one particular encoder (e.g. a shipped default) refuses another one in its place.
    init_fingerprint: str | None = None
    base_dtype: str = "auto"  # auto: bf16 when training in bf16, else fp32
    forward_chunk: int = 0  # >0: run forwards in length-sorted chunks of this many rows
    export_max_length: int = (
        512  # the exported encoder's max_length (inference), not the training cut
    )
    # (less padding; same result). 0: the micro-batch at once


@dataclass
class DataConfig:
    train: list = field(default_factory=list)  # specs: file paths, or {"hub": name, ...} dicts
    heldout: list = field(default_factory=list)  # texts for the diagnostics after the stage
    data_dir: str = field(default_factory=default_data_dir)  # relative specs resolve against it
    text_field: str = "text"
    query_field: str = "query"
    positive_field: str = "positive"
    negative_field: str = "negative"  # a string or a list of strings
    instruction_field: str = "instruction"
    query_prompt: str = "Given a search query, retrieve passages that answer it"
    use_record_instructions: bool = False  # True: a record's own instruction overrides query_prompt
    num_hard_negatives: int = 1  # per query (records with fewer are skipped)
    min_chars: int = 1  # shorter texts are skipped and counted
    min_tokens: int = 1
    min_side_tokens: int = 10  # CTKD: tokens on each side of the split point
    max_continuation_tokens: int | None = None  # CTKD/NLL: cap the continuation (None: the rest)
    on_malformed: str = "error"  # "error" or "skip" malformed JSONL lines (both report file:line)
    limit: int | None = None  # read at most this many usable records
    heldout_limit: int = 512
    hf_cache_dir: str | None = None  # datasets cache (None: the datasets default)


@dataclass
class OptimConfig:
    lr: float = 1e-4
    min_lr: float = 0.0  # linear decay from lr to min_lr after warmup
    weight_decay: float = 1e-5
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 0
    max_steps: int = 100
    grad_clip: float = 2.0  # 0 disables clipping
    batch_size: int = 8  # global, per optimizer step
    micro_batch_size: int = (
        8  # per process and forward; accumulation fills the rest (0: batch/processes)
    )
    max_minutes: float = 0.0  # >0: a time budget; the stage ends (exported, recorded) at the first
    # step past it, with fewer than max_steps steps


@dataclass
class TrainConfig:
    stage: str = "ctkd"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    temperature: float = 0.05  # contrastive stages
    seed: int = 1234
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast only where bf16 is native; bf16; fp32
    cpu_threads: int = 0  # torch intra-op threads on CPU (0: torch's default)
    gradient_checkpointing: bool = False
    out_dir: str = "training/runs/{name}/{stage}"
    name: str = "run"
    log_every: int = 1
    save_every: int = 100  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # 0 keeps all
    export: bool = True  # write <out_dir>/encoder when the stage ends
    diagnostics: bool = True  # spectrum + memory correlation after the stage
    progress: bool = True

    def __post_init__(self):
        for name, cls in (("model", ModelConfig), ("data", DataConfig), ("optim", OptimConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, name))

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir.format(name=self.name, stage=self.stage)).expanduser()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "TrainConfig":
        """A config from ``to_dict()`` output (e.g. a checkpoint's ``state.json``), type-checked."""
        if not isinstance(d, dict):
            raise TrainingError(f"{where}: a config must be a JSON object, not {type(d).__name__}")
        return merge(cls(), _flatten(d), where)

    def validate(self) -> "TrainConfig":
        if self.stage not in STAGES:
            raise TrainingError(f"stage must be one of {', '.join(STAGES)}, not {self.stage!r}")
        o = self.optim
        if o.batch_size < 1 or o.micro_batch_size < 0:
            raise TrainingError("optim.batch_size must be positive and optim.micro_batch_size >= 0")
        if o.max_steps < 1:
            raise TrainingError("optim.max_steps must be positive")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainingError(f"precision must be auto, bf16 or fp32, not {self.precision!r}")
        if self.data.on_malformed not in ("error", "skip"):
            raise TrainingError("data.on_malformed must be 'error' or 'skip'")
        if self.stage in CONTRASTIVE_STAGES and self.temperature <= 0:
            raise TrainingError("temperature must be positive")
        if self.data.min_side_tokens < 1:
            raise TrainingError("data.min_side_tokens must be at least 1")
        n = self.model.num_layers
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise TrainingError(
                f"model.num_layers must be a positive number of layers or null (all), not {n!r}"
            )
        return self

    def micro_batch(self, world_size: int) -> int:
        """Samples per process and forward pass (``micro_batch_size``, or batch/processes when 0)."""
        if self.optim.micro_batch_size:
            return self.optim.micro_batch_size
        if self.optim.batch_size % world_size:
            raise TrainingError(
                f"optim.batch_size {self.optim.batch_size} does not split over {world_size} processes"
            )
        return self.optim.batch_size // world_size

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each process."""
        per_step = self.micro_batch(world_size) * world_size
        if self.optim.batch_size % per_step:
            raise TrainingError(
                f"optim.batch_size {self.optim.batch_size} is not a multiple of "
                f"micro_batch_size {self.optim.micro_batch_size} x {world_size} processes"
            )
        return self.optim.batch_size // per_step


# ------------------------------------------------------------------ dict <-> dataclass


def _from_dict(cls, d: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise TrainingError(f"unknown field(s) in {where}: {', '.join(sorted(unknown))}")
    return cls(**d)


def merge(cfg: TrainConfig, overrides: dict, where: str = "config") -> TrainConfig:
    """A copy of ``cfg`` with nested ``overrides`` applied ({"optim": {"lr": 1e-4}, "seed": 3})."""
    out = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model),
        data=dataclasses.replace(cfg.data),
        optim=dataclasses.replace(cfg.optim),
    )
    for key, value in overrides.items():
        _set(out, key.split("."), value, where)
    return out


def _set(obj, path: list[str], value, where: str) -> None:
    names = {f.name: f for f in fields(obj)}
    head = path[0]
    if head not in names:
        raise TrainingError(
            f"{where}: unknown field {head!r} in {type(obj).__name__} "
            f"(known: {', '.join(sorted(names))})"
        )
    current = getattr(obj, head)
    if dataclasses.is_dataclass(current):
        if len(path) > 1:
            _set(current, path[1:], value, where)
        elif isinstance(value, dict):
            for k, v in value.items():
                _set(current, [k], v, where)
        else:
            raise TrainingError(f"{where}: {head} is a section; set {head}.<field>")
        return
    if len(path) > 1:
        raise TrainingError(f"{where}: {head} is not a section")
    setattr(obj, head, _coerce(value, type(obj), head, where))


def _coerce(value, owner, name: str, where: str):
    hint = typing.get_type_hints(owner)[name]
    origin = typing.get_origin(hint)
    allowed = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        base = typing.get_origin(t) or t
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is str and isinstance(value, str):
            return value
        if base is list and isinstance(value, (list, tuple)):
            return list(value)
        if base is dict and isinstance(value, dict):
            return value
    if str in allowed and isinstance(value, (int, float)):
        return str(value)
    raise TrainingError(f"{where}: {name} expects {hint}, got {value!r}")


def parse_overrides(items: list[str]) -> dict:
    """``["optim.lr=3e-5", "name=x"]`` -> ``{"optim.lr": 3e-05, "name": "x"}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise TrainingError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


# ------------------------------------------------------------------ config files


def config_path(name: str) -> Path:
    """A config name (``cpu-small``) or a path to a ``.py`` / ``.json`` file."""
    p = Path(name).expanduser()
    if p.suffix in (".py", ".json") and p.is_file():
        return p
    for candidate in (CONFIG_DIR / f"{name.replace('-', '_')}.py", CONFIG_DIR / f"{name}.json"):
        if candidate.is_file():
            return candidate
    known = sorted(
        q.stem.replace("_", "-") for q in CONFIG_DIR.glob("*.py") if not q.stem.startswith("_")
    )
    raise TrainingError(f"no config {name!r}: give a .py/.json file or one of {', '.join(known)}")


def load_config(name: str, stage: str, overrides: dict | None = None) -> TrainConfig:
    path = config_path(name)
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"_training_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "config"):
            raise TrainingError(f"{path} must define config(stage) -> TrainConfig")
        cfg = module.config(stage)
        if not isinstance(cfg, TrainConfig):
            raise TrainingError(f"{path}: config({stage!r}) did not return a TrainConfig")
    else:
        try:
            raw = json.loads(path.read_text())
        except ValueError as exc:
            raise TrainingError(f"{path} is not valid JSON: {exc}") from None
        sections = (
            {key: raw.get(key, {}) for key in ("common", stage)} if isinstance(raw, dict) else None
        )
        if sections is None or not all(isinstance(v, dict) for v in sections.values()):
            raise TrainingError(
                f'{path}: expected {{"common": {{...}}, "<stage>": {{...}}}} with objects as values'
            )
        cfg = TrainConfig(stage=stage)
        cfg = merge(cfg, _flatten(sections["common"]), str(path))
        cfg = merge(cfg, _flatten(sections[stage]), f"{path} [{stage}]")
    cfg = dataclasses.replace(cfg, stage=stage)
    if overrides:
        cfg = merge(cfg, overrides, "--set")
    return cfg.validate()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("model", "data", "optim"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
