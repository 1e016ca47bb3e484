"""The index manifest: its fields, the one validator of a parsed manifest, file digests.

``indexdir`` is the only module that reads and writes ``manifest.json`` and the store's copy of
it; this module holds what it needs to judge one (``manifest_problem`` refuses anything
malformed, so a hostile or damaged manifest is a one-line ``CompsearchError``, never a traceback
or a path outside the index), to build the next one (``build_manifest``) and to digest the
immutable files a manifest names (``file_digests``, ``edges_digest``).

Format 1 (generation folders ``gNNNNNN/`` holding ``chunks.sqlite`` and ``vectors.faiss``) is
still read; format 2 (a live store updated in place and an immutable FAISS base file
``base-NNNNNN.faiss``) is what writers produce; docs/ARCHITECTURE.md describes both.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from pathlib import Path

from . import __version__
from .chunking import ChunkingConfig
from .errors import CompsearchError
from .indexspec import REQUESTABLE, IndexSpec

FORMAT = "compsearch-index"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
STORE_FILE = "chunks.sqlite"
INDEX_FILE = "vectors.faiss"  # format 1: the vector index inside a generation folder
BASE_RE = re.compile(r"base-\d{6}\.faiss")
LISTS_RE = re.compile(r"base-\d{6}\.ivfdata")  # a base's on-disk inverted lists, beside it
EDGE_BYTES = 1 << 20  # the cheap check on load hashes the first and last MiB of each file


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def base_name(generation: int) -> str:
    """The FAISS base file written by ``generation`` (format 2)."""
    return f"base-{generation:06d}.faiss"


def is_int(value, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def manifest_problem(m: dict) -> str | None:
    """What is wrong with a parsed manifest's fields (None when they are usable)."""
    for key in ("generation", "encoder", "index"):
        if key not in m:
            return f"incomplete (no {key!r})"
    if not is_int(m["generation"], 1):
        return f"generation must be a positive integer, not {show(m['generation'])}"
    enc = m["encoder"]
    if not isinstance(enc, dict):
        return f"encoder must be a mapping, not {show(enc)}"
    if not isinstance(enc.get("fingerprint"), str) or not isinstance(
        enc.get("source"), (str, type(None))
    ):
        return "encoder.fingerprint must be a string and encoder.source a string or null"
    if not is_int(enc.get("dim"), 1):
        return f"encoder.dim must be a positive integer, not {show(enc.get('dim'))}"
    index = m["index"]
    if not isinstance(index, dict) or "spec" not in index:
        return "index must be a mapping with a spec"
    try:
        IndexSpec.from_dict(index["spec"])
    except CompsearchError as exc:
        return f"index.spec: {exc}"
    if index.get("requested", "auto") not in REQUESTABLE:
        return f"index.requested must be one of {', '.join(REQUESTABLE)}, not {show(index['requested'])}"
    if m.get("chunking") is not None:
        try:
            ChunkingConfig.from_dict(m["chunking"])
        except (TypeError, ValueError) as exc:
            return f"chunking: {exc}"
    if m.get("chunker_version") is not None and not is_int(m["chunker_version"], 1):
        return f"chunker_version must be a positive integer, not {show(m['chunker_version'])}"
    counts = m.get("counts", {})
    if not isinstance(counts, dict) or not all(is_int(v) for v in counts.values()):
        return "counts must map names to non-negative integers"
    roots = m.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        return "roots must be a list of paths"
    version = m.get("format_version", 1)
    names = (STORE_FILE, INDEX_FILE) if version < 2 else ()
    files = m.get("files", {})
    if not isinstance(files, dict) or not all(
        (name in names or BASE_RE.fullmatch(str(name)) or LISTS_RE.fullmatch(str(name)))
        and isinstance(d, dict)
        and is_int(d.get("bytes"))
        and isinstance(d.get("sha256"), str)
        and isinstance(d.get("edges_sha256"), str)
        for name, d in files.items()
    ):
        return "files must map the generation's file names to {bytes, sha256, edges_sha256}"
    if version >= 2:
        base = m.get("base")
        if (
            not isinstance(base, dict)
            or not (base.get("file") is None or BASE_RE.fullmatch(str(base.get("file"))))
            or not is_int(base.get("last_id"), -1)
            or not is_int(base.get("ntotal"))
        ):
            return "base must be {file: base-NNNNNN.faiss or null, last_id, ntotal}"
        if base["file"] is not None and base["file"] not in files:
            return f"files has no digest of {base['file']}"
        lists = base.get("lists")
        if lists is not None and (
            base["file"] is None
            or lists != base["file"].replace(".faiss", ".ivfdata")
            or lists not in files
        ):
            return "base.lists must name the base's base-NNNNNN.ivfdata, with its digest in files"
    return None


def digest(path: Path) -> dict:
    """sha256 of a file, its size, and the sha256 of its first and last MiB (checked on load)."""
    full, size = hashlib.sha256(), path.stat().st_size
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            full.update(block)
    return {"bytes": size, "sha256": full.hexdigest(), "edges_sha256": edges_digest(path, size)}


def file_digests(folder: Path, names: Iterable[str] = (STORE_FILE, INDEX_FILE)) -> dict:
    return {name: digest(Path(folder) / name) for name in names}


def edges_digest(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def differs(folder: Path, files: dict, full: bool = False) -> list[str]:
    """Files under ``folder`` that differ from their recorded digests (sizes and the first and
    last MiB; every byte with ``full``)."""
    problems = []
    for name, want in files.items():
        path = Path(folder) / name
        try:
            size = path.stat().st_size
            if size != want["bytes"]:
                problems.append(f"{name} has {size} bytes, the manifest recorded {want['bytes']}")
            elif edges_digest(path, size) != want["edges_sha256"] or (
                full and digest(path)["sha256"] != want["sha256"]
            ):
                problems.append(f"{name} differs from the digest the manifest recorded")
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
    return problems


def build_manifest(
    old: dict | None,
    index,
    counts: dict,
    *,
    requested: str | None = None,
    encoder: dict | None = None,
    chunking: dict | None = None,
    chunker_version: int | None = None,
    roots: Iterable[str] = (),
    replace_roots: bool = False,
) -> dict:
    """The manifest of the next generation: what this write changed, over what ``old`` said.

    ``index``: anything with the ``spec`` and ``ntotal`` of the vectors searched; ``encoder``:
    the ``encoder_entry`` of the encoder that made the vectors (kept from ``old`` when None);
    ``chunking`` and ``chunker_version``: set when this write chunked files, else kept;
    ``roots``: folders indexed by this write, added to the old ones (``replace_roots``: instead
    of them). ``indexdir.Transaction.commit`` adds format, generation, files and timestamps.
    """
    old = old or {}
    encoder = encoder or old.get("encoder")
    if encoder is None:
        raise CompsearchError("internal error: a new index needs the encoder that made its vectors")
    requested = requested or old.get("index", {}).get("requested", "auto")
    dim = encoder["dim"]
    manifest = {
        "compsearch_version": __version__,
        "encoder": encoder,
        "index": {
            "spec": index.spec.to_dict(),
            "requested": requested,
            "factory": index.spec.factory(dim),
            "ntotal": index.ntotal,
        },
        "chunking": chunking if chunking is not None else old.get("chunking"),
        "chunker_version": chunker_version
        if chunker_version is not None
        else old.get("chunker_version"),
        "counts": dict(counts),
        "roots": sorted(set(roots))
        if replace_roots
        else sorted(set(old.get("roots", [])) | set(roots)),
    }
    if old.get("created_at"):
        manifest["created_at"] = old["created_at"]
    return manifest


def encoder_entry(encoder) -> dict:
    """How the manifest records the encoder that made the vectors.

    compsearch's ``Encoder``: source, name, fingerprint, dim, dtype, max_length, memory tokens and
    depth (``num_layers``, null = all layers). A foreign embedder (``compsearch.embedders``)
    describes itself (``manifest_entry``); its ``source`` is null when it cannot be loaded by name.
    """
    if hasattr(encoder, "manifest_entry"):
        return encoder.manifest_entry()
    return {
        "source": encoder.source,
        "name": encoder.name,
        "fingerprint": encoder.fingerprint,
        "dim": encoder.dim,
        "dtype": str(encoder.dtype).replace("torch.", ""),
        "max_length": encoder.config.max_length,
        "num_memory_tokens": encoder.config.num_memory_tokens,
        "num_layers": getattr(encoder.config, "num_layers", None),
        "quantize": getattr(encoder, "quantize", None),
    }  # int8 weights keep the fingerprint: say so
