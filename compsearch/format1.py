"""Format 1 index directories: read them as they are, and migrate them to format 2.

Format 1 (compsearch before in-place writes) kept each generation in its own folder
``gNNNNNN/`` with ``chunks.sqlite`` and ``vectors.faiss``, the manifest being the commit point;
every write copied both. Such an index is read without change; the first write migrates it
(``migrate``, called by ``indexdir`` under the writer lock). docs/ARCHITECTURE.md has both formats.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from .errors import CompsearchError
from .fsutil import atomic_write_text, fsync_dir, usual_modes
from .index import VectorIndex
from .indexspec import IndexSpec
from .manifest import (
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST,
    STORE_FILE,
    base_name,
    differs,
    digest,
    now,
)
from .store import Store
from .storefile import WAL_SUFFIXES

log = logging.getLogger(__name__)


def generation_dir(root: Path, generation: int) -> Path:
    """A format 1 generation folder."""
    return Path(root) / f"g{generation:06d}"


def open_format_1(root: Path, manifest: dict, check: bool = True):
    """(store, VectorIndex) of a format 1 generation, read-only (``check``: refuse files that
    differ from the manifest's digests, by size and first/last MiB)."""
    gdir = generation_dir(root, manifest["generation"])
    if not gdir.is_dir():
        raise CompsearchError(
            f"index {root} is damaged: {gdir.name} named by the manifest is missing"
        )
    refuse_damaged(root, differs(gdir, manifest.get("files") or {}) if check else [])
    store = Store(gdir / STORE_FILE, readonly=True)
    spec = IndexSpec.from_dict(manifest["index"]["spec"])
    index = VectorIndex.load(gdir / INDEX_FILE, spec, manifest["encoder"]["dim"])
    return store, index


def refuse_damaged(root: Path, damaged: list[str]) -> None:
    if damaged:
        raise CompsearchError(
            f"index {root} is damaged: {damaged[0]} (compsearch verify {root} "
            f"tells more; rebuild it from its documents)"
        )


def migrate(root: Path, manifest: dict) -> dict:
    """Format 1 -> 2, under the writer lock: copy the generation's store to a temp file, give it
    the format 2 rows, link its FAISS file as the base, rename the store into place; writing the
    format 2 ``manifest.json`` is the commit point (before it, readers and a crash see format 1).
    O(index) once; the generation folder stays for readers until the next write."""
    old_store, old_index = open_format_1(root, manifest)
    gdir = generation_dir(root, manifest["generation"])
    tmp = root / f".tmp-migrate-{STORE_FILE}"
    for p in (tmp, *(Path(str(tmp) + s) for s in WAL_SUFFIXES)):
        p.unlink(missing_ok=True)
    try:
        copy = sqlite3.connect(tmp)
        old_store.db.backup(copy)
        copy.close()
    finally:
        old_store.close()
    name = base_name(manifest["generation"])
    (root / name).unlink(missing_ok=True)
    try:
        os.link(gdir / INDEX_FILE, root / name)
    except OSError:
        shutil.copy2(gdir / INDEX_FILE, root / name)
    store = Store(tmp)
    try:
        store.begin_write()  # counters, content digest and lexical index, once
        files = manifest.get("files") or {}
        new = dict(
            manifest,
            format_version=FORMAT_VERSION,
            files={name: files[INDEX_FILE] if INDEX_FILE in files else digest(root / name)},
            base={"file": name, "last_id": store.next_id() - 1, "ntotal": old_index.ntotal},
            updated_at=now(),
        )
        store.set_manifest(new)
        store.commit()
        store.db.execute("PRAGMA journal_mode=WAL")
    finally:
        store.close()
    usual_modes(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    for s in WAL_SUFFIXES:  # a stale WAL must never be replayed into the new file
        Path(str(root / STORE_FILE) + s).unlink(missing_ok=True)
    os.replace(tmp, root / STORE_FILE)
    fsync_dir(root)
    atomic_write_text(root / MANIFEST, json.dumps(new, indent=2) + "\n")
    fsync_dir(root)
    log.info("%s: migrated to index format %d", root, FORMAT_VERSION)
    return new
