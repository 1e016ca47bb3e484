"""An index directory on disk, and atomic updates of it.

Layout::

    INDEX/
      manifest.json        # the commit point: names the current generation, encoder, counts
      g000003/chunks.sqlite
      g000003/vectors.faiss
      encoder/             # the encoder that made the vectors (config, memory tokens, adapter)
      .lock                # held by a writer

This module is the one writer and reader of ``manifest.json``: ``build_manifest`` makes the dict
(``Transaction.commit`` adds the generation and timestamps and writes it) and ``read_manifest``
refuses anything malformed with a one-line ``CompsearchError``.

A generation is never modified once the manifest names it. A writer copies the current generation
into a hidden temporary folder, changes the copy, fsyncs it, renames it to the next generation and
only then replaces ``manifest.json`` (write a temp file, fsync, rename). A crash or Ctrl-C at any
moment leaves the old manifest pointing at the old, complete generation; leftovers are removed by
the next writer.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .chunking import ChunkingConfig
from .errors import CompsearchError
from .fsutil import atomic_write_text, fsync_dir, fsync_tree, usual_modes
from .index import VectorIndex
from .indexspec import REQUESTABLE, IndexSpec
from .store import Store

log = logging.getLogger(__name__)

FORMAT = "compsearch-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE_FILE = "chunks.sqlite"
INDEX_FILE = "vectors.faiss"
ENCODER_DIR = "encoder"
LOCK_TIMEOUT_ENV = "COMPSEARCH_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 600.0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_manifest(root: Path) -> dict | None:
    """The manifest, or None when ``root`` holds no index yet; errors for anything corrupt."""
    path = Path(root) / MANIFEST
    if not path.exists():
        if Path(root).exists() and not Path(root).is_dir():
            raise CompsearchError(f"{root} is a file, not an index directory")
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompsearchError(
            f"{path} is unreadable or corrupt ({exc.__class__.__name__})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CompsearchError(f"{path} is not a compsearch index manifest")
    version = manifest.get("format_version", 0)
    if not _is_int(version):
        raise CompsearchError(
            f"{path} is corrupt: format_version must be an integer, not {_show(version)}"
        )
    if version > FORMAT_VERSION:
        raise CompsearchError(
            f"{root} was written by a newer compsearch (format "
            f"{manifest['format_version']}); upgrade compsearch"
        )
    for key in ("generation", "encoder", "index"):
        if key not in manifest:
            raise CompsearchError(f"{path} is incomplete (no {key!r})")
    problem = _manifest_problem(manifest)
    if problem:
        raise CompsearchError(f"{path} is corrupt: {problem}")
    return manifest


def _is_int(value, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _manifest_problem(m: dict) -> str | None:
    """What is wrong with a parsed manifest's fields (None when they are usable)."""
    if not _is_int(m["generation"], 1):
        return f"generation must be a positive integer, not {_show(m['generation'])}"
    enc = m["encoder"]
    if not isinstance(enc, dict):
        return f"encoder must be a mapping, not {_show(enc)}"
    if not isinstance(enc.get("fingerprint"), str) or not isinstance(
        enc.get("source"), (str, type(None))
    ):
        return "encoder.fingerprint must be a string and encoder.source a string or null"
    if not _is_int(enc.get("dim"), 1):
        return f"encoder.dim must be a positive integer, not {_show(enc.get('dim'))}"
    index = m["index"]
    if not isinstance(index, dict) or "spec" not in index:
        return "index must be a mapping with a spec"
    try:
        IndexSpec.from_dict(index["spec"])
    except CompsearchError as exc:
        return f"index.spec: {exc}"
    if index.get("requested", "auto") not in REQUESTABLE:
        return f"index.requested must be one of {', '.join(REQUESTABLE)}, not {_show(index['requested'])}"
    if m.get("chunking") is not None:
        try:
            ChunkingConfig.from_dict(m["chunking"])
        except (TypeError, ValueError) as exc:
            return f"chunking: {exc}"
    if m.get("chunker_version") is not None and not _is_int(m["chunker_version"], 1):
        return f"chunker_version must be a positive integer, not {_show(m['chunker_version'])}"
    counts = m.get("counts", {})
    if not isinstance(counts, dict) or not all(_is_int(v) for v in counts.values()):
        return "counts must map names to non-negative integers"
    roots = m.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        return "roots must be a list of paths"
    files = m.get("files", {})
    if not isinstance(files, dict) or not all(
        name in (STORE_FILE, INDEX_FILE)
        and isinstance(d, dict)
        and _is_int(d.get("bytes"))
        and isinstance(d.get("sha256"), str)
        and isinstance(d.get("edges_sha256"), str)
        for name, d in files.items()
    ):
        return "files must map the generation's file names to {bytes, sha256, edges_sha256}"
    return None


EDGE_BYTES = 1 << 20  # the cheap check on load hashes the first and last MiB of each file


def file_digests(folder: Path) -> dict:
    """sha256 of each generation file, and of its first and last MiB (the cheap check on load)."""
    import hashlib

    out = {}
    for name in (STORE_FILE, INDEX_FILE):
        path = Path(folder) / name
        full, size = hashlib.sha256(), path.stat().st_size
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                full.update(block)
        out[name] = {"bytes": size, "sha256": full.hexdigest(), "edges_sha256": _edges(path, size)}
    return out


def _edges(path: Path, size: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def check_files(root: Path, manifest: dict, full: bool = False) -> list[str]:
    """Generation files that differ from the digests the manifest recorded (sizes and the first
    and last MiB; every byte with ``full``). Manifests written before digests existed pass."""
    gdir = generation_dir(root, manifest["generation"])
    problems = []
    for name, want in (manifest.get("files") or {}).items():
        path = gdir / name
        try:
            size = path.stat().st_size
            if size != want["bytes"]:
                problems.append(f"{name} has {size} bytes, the manifest recorded {want['bytes']}")
            elif _edges(path, size) != want["edges_sha256"] or (
                full and file_digests(gdir)[name]["sha256"] != want["sha256"]
            ):
                problems.append(f"{name} differs from the digest the manifest recorded")
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
    return problems


def build_manifest(
    old: dict | None,
    index: VectorIndex,
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

    ``encoder``: the ``encoder_entry`` of the encoder that made the vectors (kept from ``old``
    when None); ``chunking`` and ``chunker_version``: set when this write chunked files, else kept;
    ``roots``: folders indexed by this write, added to the old ones (``replace_roots``: instead of
    them). ``Transaction.commit`` adds
    format, generation and timestamps.
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


def generation_dir(root: Path, generation: int) -> Path:
    return Path(root) / f"g{generation:06d}"


def open_generation(root: Path, manifest: dict, check: bool = True) -> tuple[Store, VectorIndex]:
    """Open the current generation read-only (``check``: refuse files that differ from the
    manifest's digests, by size and first/last MiB; ``verify`` opens unchecked and reports)."""
    gdir = generation_dir(root, manifest["generation"])
    if not gdir.is_dir():
        raise CompsearchError(
            f"index {root} is damaged: {gdir.name} named by the manifest is missing"
        )
    damaged = check_files(root, manifest) if check else []
    if damaged:
        raise CompsearchError(
            f"index {root} is damaged: {damaged[0]} (compsearch verify {root} "
            f"tells more; rebuild it from its documents)"
        )
    store = Store(gdir / STORE_FILE, readonly=True)
    spec = IndexSpec.from_dict(manifest["index"]["spec"])
    index = VectorIndex.load(gdir / INDEX_FILE, spec, manifest["encoder"]["dim"])
    return store, index


class Transaction:
    """A writable copy of the current generation; ``commit`` makes it current atomically."""

    def __init__(
        self, root: Path, manifest: dict | None, work: Path, store: Store, index: VectorIndex | None
    ):
        self.root = root
        self.manifest = manifest
        self.work = work
        self.store = store
        self.index = index
        self.committed = False

    def commit(self, **changes) -> dict:
        """Write everything, then switch the manifest; returns the manifest written.

        ``changes``: what ``build_manifest`` takes besides the old manifest, the index and the
        counts (``requested``, ``encoder``, ``chunking``, ``chunker_version``, ``roots``).
        """
        if self.index is None:
            raise CompsearchError("nothing to commit: no vector index was built")
        counts = {"chunks": self.store.count(), "files": self.store.file_count()}
        manifest = build_manifest(self.manifest, self.index, counts, **changes)
        generation = (self.manifest["generation"] + 1) if self.manifest else 1
        self.store.commit()
        self.store.close()
        self.index.save(self.work / INDEX_FILE)
        usual_modes(self.work)
        fsync_tree(self.work)
        manifest["files"] = file_digests(self.work)
        target = generation_dir(self.root, generation)
        if target.exists():  # a leftover from a crash after rename but before the manifest
            shutil.rmtree(target)
        os.replace(self.work, target)
        manifest = dict(
            manifest,
            format=FORMAT,
            format_version=FORMAT_VERSION,
            generation=generation,
            updated_at=now(),
        )
        manifest.setdefault("created_at", (self.manifest or {}).get("created_at", now()))
        try:
            atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # not committed: leave no generation behind
            raise
        self.committed = True
        _remove_stale(self.root, keep=_kept(generation))
        return manifest


def lock_timeout() -> float:
    """Seconds a writer waits for another writer: ``$COMPSEARCH_LOCK_TIMEOUT`` (default 600;
    a negative value waits for ever)."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        raise CompsearchError(
            f"{LOCK_TIMEOUT_ENV} must be a number of seconds, not {raw!r}"
        ) from None


@contextmanager
def transaction(root: Path, timeout: float | None = None):
    """Lock the index, copy the current generation, yield a ``Transaction``; roll back on error.

    One writer at a time: a second one waits for the lock (saying so once, on the
    ``compsearch.indexdir`` logger) for ``timeout`` seconds (default ``lock_timeout()``), then
    gives up with a one-line error; nothing it was asked to write is half-done.
    """
    from filelock import FileLock, Timeout

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"))
    timeout = lock_timeout() if timeout is None else timeout
    try:
        lock.acquire(timeout=0)
    except Timeout:
        wait = "for ever" if timeout < 0 else f"up to {timeout:g} s ({LOCK_TIMEOUT_ENV})"
        log.warning("%s is being updated by another process; waiting %s", root, wait)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise CompsearchError(
                f"{root} is still being updated by another process after "
                f"{timeout:g} s; try again later or raise {LOCK_TIMEOUT_ENV}"
            ) from None
    work = None
    try:
        manifest = read_manifest(root)
        _remove_stale(root, keep=_kept(manifest["generation"]) if manifest else set())
        work = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        tx = None
        try:
            index = None
            if manifest:
                old_store, index = open_generation(root, manifest)
                copy = sqlite3.connect(work / STORE_FILE)
                old_store.db.backup(copy)
                copy.close()
                old_store.close()
            tx = Transaction(root, manifest, work, Store(work / STORE_FILE), index)
            yield tx
        finally:
            if tx is None or not tx.committed:
                if tx is not None:
                    tx.store.close()
                shutil.rmtree(work, ignore_errors=True)
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        if _out_of_space(exc):
            raise CompsearchError(
                f"no space left on the device of {root} while writing the index; "
                f"nothing was changed (the previous index is intact)"
            ) from None
        raise
    finally:
        lock.release()


def _kept(generation: int) -> set[str]:
    """Generation folders kept on disk: the current one and the one before it, so that a reader
    that read the manifest just before a commit still finds the files it names."""
    return {generation_dir(Path("."), g).name for g in (generation, generation - 1) if g >= 1}


def _out_of_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return (
        "disk is full" in text
        or "no space left" in text
        or (isinstance(exc, RuntimeError) and "write" in text and "error" in text)
    )


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Delete generations and temp folders not in ``keep`` (old generations, crash leftovers)."""
    for p in root.iterdir():
        if (
            p.is_dir()
            and p.name not in keep
            and (p.name.startswith(".tmp-") or (p.name.startswith("g") and p.name[1:].isdigit()))
        ):
            shutil.rmtree(p, ignore_errors=True)
