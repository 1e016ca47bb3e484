"""The CPU fast path of the encoder: merged weights read from a cache, a light tokenizer, int8.

Why: loading a trained encoder used to mean building the base model, wrapping it in peft and
merging the LoRA adapter on every process start (seconds of imports and arithmetic for a query
that takes tens of milliseconds). The merge is deterministic, so it is done once and the merged
backbone (only the layers the encoder uses) is written as safetensors under
``cache_home()/"merged"/<encoder fingerprint>/``. A later load is a read of that folder; peft is
not imported, and for a plain Llama on the CPU neither is transformers (``compsearch.llama``).

The cache is trusted only if it says what it is: the safetensors header records the encoder
fingerprint, and the file's sha256 must match the one recorded beside it at write time (hashed
once per size/mtime via ``models.file_digest``). Anything else (truncated, edited, another
encoder) is rebuilt. Writes are atomic (temp folder, rename), so a crash never leaves a cache
that looks valid.

The tokenizer is read with the ``tokenizers`` library straight from ``tokenizer.json`` when the
model has one: ``transformers.AutoTokenizer`` gives the same ids but costs a noticeable part of a
cold start.

``quantize="int8"``: per-output-channel dynamic int8 quantisation (weights int8 with one scale
per output row, activations quantised per call) with ``torch.ao``'s ``quantize_dynamic``, of the
q/k/v/gate/up projections. ``o_proj`` and ``down_proj`` stay in fp32: their inputs carry the few
huge activation outliers of LLMs, and one per-tensor activation scale for those flattens every
other channel. Measured on the shipped default (16 paragraphs, 1 thread): every Linear in int8
gave mean cosine .84 to fp32 (min .70); without down_proj .95; without o_proj and down_proj .96
(1.76x faster than fp32); attention only .98 (1.26x). None is close enough to fp32 to be a
default, so it is an option: see benchmarks/README.md.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from .errors import CompsearchError
from .fsutil import atomic_replace_dir, cache_home

log = logging.getLogger(__name__)

MERGED_DIR = "merged"
WEIGHTS_FILE = "model.safetensors"
RECORD_FILE = "compsearch_merged.json"
MERGE_VERSION = 1  # bump when what the cache holds changes
QUANTIZE_CHOICES = (None, "int8")


def merged_cache_dir(fingerprint: str) -> Path:
    return cache_home() / MERGED_DIR / fingerprint


# -------------------------------------------------------------------- merged weights cache
def read_merged(fingerprint: str) -> Path | None:
    """The cached merged backbone folder for this encoder if it is complete and verified, else None."""
    from .models import file_digest

    folder = merged_cache_dir(fingerprint)
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
        weights = folder / WEIGHTS_FILE
        if (
            record.get("fingerprint") != fingerprint
            or record.get("version") != MERGE_VERSION
            or _header_fingerprint(weights) != fingerprint
            or weights.stat().st_size != record.get("bytes")
            or file_digest(weights) != record.get("sha256")
        ):
            raise ValueError("mismatch")
        return folder
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001  (safetensors raises its own error type for a bad header)
        log.warning("the merged-weights cache %s is damaged or stale; rebuilding it", folder)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def write_merged(fingerprint: str, model) -> Path | None:
    """Write ``model``'s (merged) state dict and config as a loadable folder; None if the cache is
    not writable (then every load merges, as before)."""
    import hashlib

    from safetensors.torch import save_file

    folder = merged_cache_dir(fingerprint)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{fingerprint[:16]}."))
    except OSError as exc:
        log.info("merged weights not cached (%s)", exc)
        return None
    try:
        state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(
            state,
            str(tmp / WEIGHTS_FILE),
            metadata={"format": "pt", "compsearch_fingerprint": fingerprint},
        )
        model.config.to_json_file(str(tmp / "config.json"))
        h = hashlib.sha256()
        with open(tmp / WEIGHTS_FILE, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        record = {
            "fingerprint": fingerprint,
            "version": MERGE_VERSION,
            "sha256": h.hexdigest(),
            "bytes": (tmp / WEIGHTS_FILE).stat().st_size,
        }
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        atomic_replace_dir(tmp, folder)
    except OSError as exc:
        log.info("merged weights not cached (%s)", exc)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remember_digest(folder, record["sha256"])
    return folder


def _remember_digest(folder: Path, digest: str) -> None:
    """Seed ``file_digest``'s memo with the hash just computed, so the first read does not re-hash."""
    from .fsutil import atomic_write_text

    weights = (folder / WEIGHTS_FILE).resolve()
    st = weights.stat()
    memo_path = cache_home() / "digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    memo[f"{weights}|{st.st_size}|{st.st_mtime_ns}"] = digest
    try:
        atomic_write_text(memo_path, json.dumps(memo, indent=0, sort_keys=True))
    except OSError:
        pass


def _header_fingerprint(weights: Path) -> str | None:
    from safetensors import safe_open

    with safe_open(
        str(weights), framework="np"
    ) as f:  # parses and checks the header only (no torch)
        return (f.metadata() or {}).get("compsearch_fingerprint")


def merge_adapter(model, adapter_folder: Path):
    """Merge a peft LoRA adapter into ``model`` (peft's own merge).

    peft's ``PeftModel`` reads ``model.is_gradient_checkpointing``, which transformers 5 deprecates
    with a FutureWarning; that one warning is caught here (it says nothing about the user's call).
    """
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        return PeftModel.from_pretrained(model, str(adapter_folder)).merge_and_unload().eval()


# -------------------------------------------------------------------- tokenizer
class LightTokenizer:
    """The part of a transformers tokenizer the encoder uses, on the ``tokenizers`` library.

    ``__call__(texts, add_special_tokens=True, truncation=False)["input_ids"]``, ``pad_token_id``,
    ``eos_token_id``. The special-token post-processing is the one in ``tokenizer.json``, which is
    what transformers' fast tokenizers apply too.
    """

    def __init__(self, tokenizer, pad_token_id: int | None, eos_token_id: int | None):
        self.backend = tokenizer
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id

    def __call__(self, texts, add_special_tokens: bool = True, truncation: bool = False) -> dict:
        if truncation:
            raise ValueError("LightTokenizer does not truncate; cut the ids instead")
        if isinstance(texts, str):
            texts = [texts]
        encs = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encs]}

    @classmethod
    def from_folder(cls, folder: Path) -> "LightTokenizer | None":
        """None when the folder has no ``tokenizer.json`` (then transformers' tokenizer is used)."""
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            return None
        from tokenizers import Tokenizer

        try:
            special = json.loads((folder / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            special = {}
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()

        def token_id(key):
            value = special.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            return tok.token_to_id(value) if isinstance(value, str) else None

        eos = token_id("eos_token")
        pad = token_id("pad_token")
        return cls(tok, pad if pad is not None else eos, eos)


# -------------------------------------------------------------------- int8
def check_quantize(quantize: str | None) -> str | None:
    if quantize in (None, "none", "fp32"):
        return None
    if quantize not in QUANTIZE_CHOICES:
        raise CompsearchError(f"unknown quantize={quantize!r}; use 'int8' or None")
    return quantize


INT8_KEEP_FLOAT = ("o_proj", "down_proj")  # inputs with activation outliers (see above)


def quantize_int8(model):
    """Per-output-channel dynamic int8 for the ``nn.Linear`` layers not in ``INT8_KEEP_FLOAT``."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if next(model.parameters()).device.type != "cpu":
        raise CompsearchError("quantize='int8' runs on the CPU only; load with device='cpu'")
    spec = {
        name: per_channel_dynamic_qconfig
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in INT8_KEEP_FLOAT
    }
    with warnings.catch_warnings():  # torch.ao's eager quantisation announces its move to torchao
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")
        return quantize_dynamic(model.float(), spec, dtype=torch.qint8, inplace=True)
