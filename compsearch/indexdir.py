"""An index directory on disk, and atomic, incremental updates of it.

Layout (format 2)::

    INDEX/
      manifest.json          # a mirror of the store's committed manifest (format, encoder, counts)
      chunks.sqlite          # the live store, updated in place (WAL journal: -wal, -shm beside it)
      base-000003.faiss      # the FAISS base: immutable, written by generation 3
      base-000003.ivfdata    # its on-disk inverted lists, when built so (``basefile``)
      encoder/               # the encoder that made the vectors (config, memory tokens, adapter)
      .lock                  # held by a writer

Why in place: copying the store and the vector index into a new generation folder made every
write O(index) (6.5 s for one chunk at 200k chunks, benchmarks/results/writecost.md). Now a write
is one SQLite transaction on the live store: its ``meta`` rows hold the generation number and the
whole manifest, and the SQLite commit is the commit point. ``manifest.json`` is rewritten after
it, as a mirror: a reader whose mirror is behind the store's committed generation uses the
store's (the next writer rolls the mirror forward), and a store ahead of no manifest cannot
exist: the first write of an index commits before ``manifest.json`` names it, and a writer that
finds no manifest deletes any store left there. Readers are never blocked (WAL) and pin one
snapshot per search (``Store.begin_read``), so they see the old or the new generation.

The FAISS base is rewritten only when a write changes its kind or it gets stale
(``index.base_is_stale``), by
``compact``/``rebuild``, and for a new index; chunks added since are searched exactly from their
stored vectors and chunks deleted since are tombstones (``index.LayeredIndex``). A new base is
written to a temp file, fsynced and renamed to ``base-<generation>.faiss`` before the commit that
names it; its digest is in the manifest (size and edges checked on load, every byte by
``verify``). The current and the previous base are kept for readers; older ones, and leftovers
of crashed writes, are removed by the next writer.

Format 1 indexes (generation folders) are read as they are; the first write migrates them
(``format1.migrate``). docs/ARCHITECTURE.md has the whole protocol.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

from . import basefile
from .errors import CompsearchError
from .fsutil import atomic_write_text, fsync_dir
from .index import LayeredIndex, VectorIndex
from .indexspec import IndexSpec
from .manifest import (  # noqa: F401  (re-exported: the names callers know indexdir by)
    BASE_RE,
    EDGE_BYTES,
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST,
    STORE_FILE,
    base_name,
    build_manifest,
    differs,
    digest,
    encoder_entry,
    file_digests,
    manifest_problem,
    now,
    show,
)
from .format1 import generation_dir, migrate, open_format_1
from .store import Store
from .storefile import WAL_SUFFIXES

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
LOCK_TIMEOUT_ENV = "COMPSEARCH_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 600.0


# ---------------------------------------------------------------- reading the manifest
def read_manifest(root: Path) -> dict | None:
    """The manifest of the last committed generation, or None when ``root`` holds no index yet;
    errors for anything corrupt. For format 2 the store's committed copy wins when the mirror
    ``manifest.json`` is behind it (a crash between the commit and the mirror)."""
    return _read(Path(root))[0]


def _read(root: Path) -> tuple[dict | None, int]:
    """(manifest, the generation manifest.json itself names)."""
    path = root / MANIFEST
    if not path.exists():
        if root.exists() and not root.is_dir():
            raise CompsearchError(f"{root} is a file, not an index directory")
        return None, 0
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompsearchError(
            f"{path} is unreadable or corrupt ({exc.__class__.__name__})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CompsearchError(f"{path} is not a compsearch index manifest")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CompsearchError(
            f"{path} is corrupt: format_version must be an integer, not {show(version)}"
        )
    if version > FORMAT_VERSION:
        raise CompsearchError(
            f"{root} was written by a newer compsearch (format "
            f"{manifest['format_version']}); upgrade compsearch"
        )
    for key in ("generation", "encoder", "index"):
        if key not in manifest:
            raise CompsearchError(f"{path} is incomplete (no {key!r})")
    problem = manifest_problem(manifest)
    if problem:
        raise CompsearchError(f"{path} is corrupt: {problem}")
    if version < 2:
        return manifest, manifest["generation"]
    committed = _store_manifest(root)
    if committed["generation"] < manifest["generation"]:
        raise CompsearchError(
            f"index {root} is damaged: {STORE_FILE} is at generation {committed['generation']}, "
            f"behind its manifest ({manifest['generation']}); rebuild it from its documents"
        )
    return (committed if committed["generation"] > manifest["generation"] else manifest), manifest[
        "generation"
    ]


def _store_manifest(root: Path) -> dict:
    """The manifest committed in the live store (format 2), validated."""
    try:
        store = Store(root / STORE_FILE, readonly=True)
    except CompsearchError as exc:
        raise CompsearchError(f"index {root} is damaged: {exc}") from None
    try:
        committed = store.manifest()
    except sqlite3.DatabaseError as exc:
        raise CompsearchError(f"index {root} is damaged: {STORE_FILE} ({exc})") from None
    finally:
        store.close()
    if not isinstance(committed, dict):
        raise CompsearchError(f"index {root} is damaged: {STORE_FILE} holds no manifest")
    problem = manifest_problem(committed)
    if problem:
        raise CompsearchError(f"index {root} is damaged: the store's manifest: {problem}")
    return committed


def store_path(root: Path, manifest: dict) -> Path:
    """The chunk store a manifest names (format 1: inside its generation folder)."""
    if manifest.get("format_version", 1) < 2:
        return generation_dir(root, manifest["generation"]) / STORE_FILE
    return Path(root) / STORE_FILE


def index_path(root: Path, manifest: dict) -> Path | None:
    """The FAISS file a manifest names (None: a format 2 index without a base yet)."""
    if manifest.get("format_version", 1) < 2:
        return generation_dir(root, manifest["generation"]) / INDEX_FILE
    name = manifest["base"]["file"]
    return Path(root) / name if name else None


def check_files(root: Path, manifest: dict, full: bool = False) -> list[str]:
    """Immutable files that differ from the digests the manifest recorded (sizes and the first
    and last MiB; every byte with ``full``): format 1's generation files, format 2's FAISS base
    (its live store is checked by ``Store.check``). Manifests written before digests pass."""
    folder = Path(root)
    if manifest.get("format_version", 1) < 2:
        folder = generation_dir(root, manifest["generation"])
    return differs(folder, manifest.get("files") or {}, full)


# ---------------------------------------------------------------- opening for reads
def open_generation(root: Path, manifest: dict, check: bool = True) -> tuple[Store, object]:
    """Open the index for reading: (store, vector index).

    Format 1: the manifest's generation folder (``check``: refuse files that differ from the
    manifest's digests, by size and first/last MiB; ``verify`` opens unchecked and reports).
    Format 2: the live store, left pinned at one snapshot (``store.end_read()`` releases it),
    and the ``LayeredIndex`` of that snapshot.
    """
    root = Path(root)
    if manifest.get("format_version", 1) < 2:
        return open_format_1(root, manifest, check)
    if not (root / STORE_FILE).is_file():
        raise CompsearchError(f"index {root} is damaged: {STORE_FILE} is missing")
    store = Store(root / STORE_FILE, readonly=True)
    try:
        _, index = refresh(root, store, None, check)
    except BaseException:
        store.close()
        raise
    return store, index


def pin(root: Path, manifest: dict, store: Store | None, index):
    """A reader's (manifest, store, index, live) at the newest committed generation: opened on
    first use (again with a fresh manifest when a writer removed what an old one named), then,
    for a live (format 2) store, pinned at its newest snapshot by ``refresh``."""
    if store is None:
        try:
            store, index = open_generation(root, manifest)
        except CompsearchError:
            fresh = read_manifest(root)
            if not fresh or fresh["generation"] == manifest["generation"]:
                raise
            manifest = fresh
            store, index = open_generation(root, fresh)
    live = manifest.get("format_version", 1) >= 2
    if live:
        committed, index = refresh(root, store, index)
        if committed["generation"] != manifest["generation"]:
            manifest = committed
    return manifest, store, index, live


def refresh(root: Path, store: Store, index: LayeredIndex | None, check: bool = True):
    """Pin the store's newest snapshot (if not pinned) and bring ``index`` up to it: the base
    reloaded only when the snapshot names another file, then the chunks added and deleted since
    what ``index`` has seen. Returns (the snapshot's manifest, its index)."""
    for attempt in range(3):
        store.begin_read()
        if index is not None and index.manifest["generation"] == store.generation():
            return index.manifest, index  # nothing committed since: nothing to read
        manifest = store.manifest()
        problem = "holds no manifest" if manifest is None else manifest_problem(manifest)
        if problem:
            raise CompsearchError(f"index {root} is damaged: the store's manifest: {problem}")
        base = manifest["base"]
        try:
            if index is None or index.base_file != base["file"]:
                index = _load_base(root, manifest, check)
            break
        except FileNotFoundError:  # two rebuilds since this snapshot was pinned: take a newer one
            store.end_read()
            if attempt == 2:
                raise CompsearchError(
                    f"index {root} is damaged: {base['file']} is missing"
                ) from None
    dim = manifest["encoder"]["dim"]
    for ids, vecs in store.vectors_after(index.seen_id, dim):
        index.add_delta(ids, vecs)
    dead, index.tomb_seq = store.tombstones_after(index.tomb_seq)
    index.add_tombstones(dead)
    index.manifest = manifest
    return manifest, index


def _load_base(root: Path, manifest: dict, check: bool) -> LayeredIndex:
    loaded = basefile.load(root, manifest, check)
    spec = loaded.spec if loaded else IndexSpec.from_dict(manifest["index"]["spec"])
    index = LayeredIndex(loaded, spec, manifest["encoder"]["dim"], manifest["base"]["last_id"])
    index.base_file = manifest["base"]["file"]
    return index


# ---------------------------------------------------------------- writing
class Transaction:
    """One write: the live store inside its SQLite transaction; ``commit`` makes it current.

    ``store``: the store to change; ``manifest``: the committed generation this write changes;
    ``index``: set it to a new ``VectorIndex`` over every stored chunk to write a new FAISS base
    (left None, the base stays and the new chunks are searched from the store).
    """

    def __init__(self, root: Path, manifest: dict | None, store: Store):
        self.root = root
        self.manifest = manifest
        self.store = store
        self.index: VectorIndex | None = None
        self.committed = False
        self.written: list[Path] = []  # files of this write, removed if it does not commit

    @property
    def spec(self) -> IndexSpec | None:
        """The spec of the FAISS base this write leaves (None: no index yet)."""
        if self.index is not None:
            return self.index.spec
        return IndexSpec.from_dict(self.manifest["index"]["spec"]) if self.manifest else None

    def commit(self, **changes) -> dict:
        """Write the new base (if any), commit the store, then mirror the manifest; returns it.

        ``changes``: what ``build_manifest`` takes besides the old manifest, the index and the
        counts (``requested``, ``encoder``, ``chunking``, ``chunker_version``, ``roots``).
        """
        old, store = self.manifest or {}, self.store
        generation = old.get("generation", 0) + 1
        files, base = dict(old.get("files") or {}), old.get("base")
        if self.index is not None:
            name = base_name(generation)
            files = basefile.write(self.root, name, self.index, self.written)
            base = {"file": name, "last_id": store.next_id() - 1, "ntotal": self.index.ntotal}
            if self.index.lists is not None:
                base["lists"] = basefile.lists_name(name)
            store.clear_tombstones()
        elif base is None:
            raise CompsearchError("nothing to commit: no vector index was built")
        counts = {"chunks": store.count(), "files": store.file_count()}
        summary = SimpleNamespace(spec=self.spec, ntotal=counts["chunks"])
        manifest = build_manifest(self.manifest, summary, counts, **changes)
        manifest = dict(
            manifest,
            format=FORMAT,
            format_version=FORMAT_VERSION,
            generation=generation,
            files=files,
            base=base,
            updated_at=now(),
        )
        manifest.setdefault("created_at", old.get("created_at", now()))
        store.set_manifest(manifest)
        store.commit()  # the commit point
        self.committed = True
        _mirror(self.root, manifest)
        _remove_stale(self.root, manifest)
        return manifest


def _mirror(root: Path, manifest: dict) -> None:
    """Roll ``manifest.json`` forward to a committed manifest. Failing here loses nothing (the
    store is the commit point and readers take its copy): a warning, not an error."""
    try:
        atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        fsync_dir(root)
    except OSError as exc:
        log.warning(
            "%s: generation %d is committed but %s could not be updated (%s); the next write "
            "updates it",
            root,
            manifest["generation"],
            MANIFEST,
            exc.strerror or exc,
        )


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
def writer_lock(root: Path, timeout: float | None = None):
    """The index's one-writer lock. A second writer waits (saying so once, on the
    ``compsearch.indexdir`` logger) for ``timeout`` seconds (default ``lock_timeout()``), then
    gives up with a one-line error."""
    from filelock import FileLock, Timeout

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
    try:
        yield
    finally:
        lock.release()


@contextmanager
def transaction(root: Path, timeout: float | None = None, *, locked: bool = False):
    """Lock the index, open the live store's write transaction, yield a ``Transaction``; roll
    back on error. One writer at a time (``writer_lock``; ``locked``: the caller holds it); a
    failure leaves the last committed generation, and a full disk is a one-line error."""
    root = Path(root)
    try:
        with nullcontext() if locked else writer_lock(root, timeout):
            store = tx = None
            try:
                manifest = _prepare(root)
                store = _open_live(root)
                store.begin_write()
                tx = Transaction(root, manifest, store)
                yield tx
            finally:
                if store is not None:
                    _end_write(store, tx)
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        if _out_of_space(exc):
            raise CompsearchError(
                f"no space left on the device of {root} while writing the index; "
                f"nothing was changed (the previous index is intact)"
            ) from None
        if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EROFS:
            raise CompsearchError(f"index {root} is not writable ({exc.strerror})") from None
        if isinstance(exc, sqlite3.DatabaseError):
            raise CompsearchError(
                f"index {root} could not be written ({exc}); compsearch verify {root} tells more"
            ) from None
        raise


def _end_write(store: Store, tx: Transaction | None) -> None:
    """Roll back what did not commit and remove the files only it named. Asks SQLite, not
    ``tx.committed``: a Ctrl-C can land between the COMMIT and the line after it."""
    try:
        store.rollback()
        lists = getattr(tx.index, "lists", None) if tx is not None else None
        if lists is not None and lists.parent.name.startswith(".tmp-"):  # built, not written
            shutil.rmtree(lists.parent, ignore_errors=True)
        if tx is not None and tx.written:
            base = (store.manifest() or {}).get("base") or {}
            for path in tx.written:
                if path.name not in (base.get("file"), base.get("lists")):
                    path.unlink(missing_ok=True)
    finally:
        store.close()


def _prepare(root: Path) -> dict | None:
    """(Writer, under the lock) the committed manifest, after migrating a format 1 index,
    rolling the mirror forward and removing what crashed writes left."""
    manifest, mirrored = _read(root)
    if manifest is None:  # no index: a store here is a first write that never got a manifest
        for name in (STORE_FILE, *(STORE_FILE + s for s in WAL_SUFFIXES)):
            (root / name).unlink(missing_ok=True)
    elif manifest.get("format_version", 1) < 2:
        manifest = migrate(root, manifest)
    elif manifest["generation"] > mirrored:
        _mirror(root, manifest)
    _remove_stale(root, manifest)
    return manifest


def _open_live(root: Path) -> Store:
    store = Store(root / STORE_FILE)
    store.db.execute("PRAGMA journal_mode=WAL")
    store.db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the mirror says so
    return store


def _out_of_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return (
        "disk is full" in text
        or "no space left" in text
        or (isinstance(exc, RuntimeError) and "write" in text and "error" in text)
    )


def _remove_stale(root: Path, manifest: dict | None) -> None:
    """(Writer, under the lock) delete what no committed generation needs: temp files, format 1
    generation folders but the last two (a migrated one stays for its readers until the write
    after the migration), base files other than the current and the previous one (a reader that
    pinned the snapshot before the last rebuild still loads it)."""
    version = (manifest or {}).get("format_version", 1)
    generation = (manifest or {}).get("generation", 0)
    keep_dirs = {generation_dir(Path("."), g).name for g in (generation, generation - 1) if g >= 1}
    current = (manifest or {}).get("base", {}).get("file") if version >= 2 else None
    keep_files = basefile.kept(root, current)
    for p in root.iterdir():
        if p.name.startswith(".tmp-") or (p.name.startswith(".") and p.name.endswith(".tmp")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        elif p.is_dir() and p.name.startswith("g") and p.name[1:].isdigit():
            if p.name not in keep_dirs:
                shutil.rmtree(p, ignore_errors=True)
        elif basefile.is_base(p.name) and p.name not in keep_files:
            p.unlink(missing_ok=True)
