"""The encoder folder format: ``EncoderConfig`` (``compsearch_encoder.json``), the memory tokens,
the optional LoRA adapter; its one writer (``write_encoder_folder``) and the encoder fingerprint.

Kept apart from ``encoder`` (the model that runs) so that the format has one owner and code that
only reads or identifies encoder folders needs no model; torch is imported only where tensors are
hashed or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import CompsearchError
from .fsutil import atomic_replace_dir
from .models import BUNDLED

FORMAT_VERSION = 1
CONFIG_FILE = "compsearch_encoder.json"
MEMORY_FILE = "memory.safetensors"
ADAPTER_DIR = "adapter"
DEFAULT_QUERY_PROMPT = "Given a search query, retrieve passages that answer it"


@dataclass
class EncoderConfig:
    """Everything that defines an encoder besides weights; saved as compsearch_encoder.json."""

    base_model: str = BUNDLED  # "bundled:...", a local folder, or a hub id
    base_fingerprint: str | None = None
    num_memory_tokens: int = 8
    max_length: int = 512  # text tokens; the memory tokens come on top
    num_layers: int | None = (
        None  # the first L transformer layers of the base, then its final norm; None: all
    )
    query_prompt: str | None = DEFAULT_QUERY_PROMPT  # queries become "{prompt}: {query}\n"
    document_prompt: str | None = None
    pooling: str = "memory-mean"
    normalize: bool = True
    training: dict = field(
        default_factory=dict
    )  # provenance written by training/: recipe, data, steps
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        version = d.get("format_version", 0)
        if version > FORMAT_VERSION:
            raise CompsearchError(
                f"encoder format {version} is newer than this compsearch "
                f"understands ({FORMAT_VERSION}); upgrade compsearch"
            )
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CompsearchError(f"unknown encoder config fields: {sorted(unknown)}")
        cfg = cls(**d)
        if cfg.num_memory_tokens < 1 or cfg.max_length < 1:
            raise CompsearchError("num_memory_tokens and max_length must be positive")
        if cfg.num_layers is not None and (
            not isinstance(cfg.num_layers, int)
            or isinstance(cfg.num_layers, bool)
            or cfg.num_layers < 1
        ):
            raise CompsearchError(
                f"num_layers must be a positive integer or null, not {cfg.num_layers!r}"
            )
        if cfg.pooling != "memory-mean":
            raise CompsearchError(f"unsupported pooling {cfg.pooling!r}")
        return cfg


def encoder_fingerprint(
    config: EncoderConfig, memory, adapter: tuple[dict, dict] | None = None
) -> str:
    """sha256 over the config (less provenance), the memory tokens and the adapter.

    A full-depth encoder (``num_layers`` None) hashes exactly as before depth existed, so indexes
    built earlier keep matching; any explicit depth is part of the identity.
    """
    h = hashlib.sha256()
    cfg = config.to_dict()
    cfg.pop("training", None)  # provenance, not behaviour
    if cfg.get("num_layers") is None:
        cfg.pop("num_layers", None)
    h.update(json.dumps(cfg, sort_keys=True).encode())
    h.update(_tensor_bytes(memory))
    if adapter is not None:
        adapter_config, tensors = adapter
        # peft writes target_modules from a set: same adapter, any order; hash it sorted
        adapter_config = {
            k: sorted(v) if k == "target_modules" and isinstance(v, list) else v
            for k, v in adapter_config.items()
        }
        h.update(json.dumps(adapter_config, sort_keys=True, default=str).encode())
        for key in sorted(tensors):
            h.update(key.encode() + _tensor_bytes(tensors[key]))
    return h.hexdigest()


def write_encoder_folder(
    path: str | os.PathLike,
    config: EncoderConfig,
    memory,
    adapter: tuple[dict, dict] | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """The one writer of the encoder folder (``Encoder.save`` and ``training`` export both use it).

    ``adapter``: (peft adapter config dict, {tensor name: tensor}) as peft saves them, loadable by
    ``PeftModel.from_pretrained`` onto the base ``AutoModel``; tensors keep their dtype (bf16 halves
    the folder). ``extra_files``: relative name -> text (e.g. ``README.md``, the model card).
    Written into a temp folder beside ``path`` and renamed into place.
    """
    from safetensors.torch import save_file

    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        save_file({"memory": memory.detach().float().cpu().contiguous()}, str(tmp / MEMORY_FILE))
        if adapter is not None:
            adapter_config, tensors = adapter
            (tmp / ADAPTER_DIR).mkdir()
            (tmp / ADAPTER_DIR / "adapter_config.json").write_text(
                json.dumps(adapter_config, indent=2, default=str) + "\n"
            )
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                str(tmp / ADAPTER_DIR / "adapter_model.safetensors"),
                metadata={"format": "pt"},
            )
        for name, text in (extra_files or {}).items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        atomic_replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_fingerprint(folder: str | os.PathLike) -> str:
    """The fingerprint of a saved encoder folder (as ``Encoder.load(folder).fingerprint``), read from
    its files alone: no base model is loaded."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = EncoderConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    memory = load_file(str(folder / MEMORY_FILE))["memory"].float()
    adapter = _read_adapter(folder / ADAPTER_DIR) if (folder / ADAPTER_DIR).is_dir() else None
    return encoder_fingerprint(config, memory, adapter)


def _read_adapter(folder: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    return config, load_file(str(folder / "adapter_model.safetensors"))


def _tensor_bytes(t) -> bytes:
    t = (
        t.detach().cpu().float().contiguous()
    )  # bf16 -> fp32 is exact, so the digest ignores storage dtype
    return str(tuple(t.shape)).encode() + t.numpy().tobytes()
