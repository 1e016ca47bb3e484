"""The FAISS base of a format 2 index on disk: ``base-<gen>.faiss``, and beside it, for an IVF base
with on-disk inverted lists, ``base-<gen>.ivfdata``.

Why a second file: past RAM, an IVF index's lists (every vector's code and id) can stay in a file
that FAISS memory-maps (``OnDiskInvertedLists``), with only the coarse quantiser and the list
offsets in the ``.faiss`` file. The pair is one base: both are written and fsynced in a temp
folder, renamed into the index folder before the commit that names them (``indexdir``), both
have their digests in the manifest (``verify`` reads every byte), both are kept or removed
together. The lists are mapped read only: a reader never changes the file other readers map, and
a base with lists is never folded in place (``VectorIndex.supports_remove``): a new one is built.

FAISS records the lists' path inside the ``.faiss`` file; compsearch records the bare name and
reads with ``IO_FLAG_ONDISK_SAME_DIR`` (the lists are looked up beside the ``.faiss`` file, so the
index folder may move). FAISS prints a line on the C stdout when it does that; it is swallowed so
that ``--json`` output stays JSON. A lists file whose size differs from the manifest's is never
mapped (reading past its end would kill the process with SIGBUS), not even by ``verify``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import CompsearchError
from .format1 import refuse_damaged
from .fsutil import fsync_dir, usual_modes
from .index import VectorIndex, import_faiss
from .indexspec import IndexSpec
from .manifest import BASE_RE, LISTS_RE, differs, digest

LISTS_FILE = "lists.ivfdata"  # the lists' name inside a build folder, until the commit names them


def lists_name(name: str) -> str:
    """The lists file of base file ``name``."""
    return name[: -len(".faiss")] + ".ivfdata"


def build_dir(root: Path) -> Path:
    """A new temp folder in the index folder to build on-disk lists in (a crash leaves it to the
    next writer's garbage collection, which removes ``.tmp-*``)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-base-", dir=root))


def write(root: Path, name: str, index: VectorIndex, written: list[Path]) -> dict:
    """Write ``index`` as the base ``root/name`` (and its lists), fsynced, before the commit;
    returns the manifest's ``files`` entries. ``written`` gets every path, for the rollback."""
    path = root / name
    written.append(path)
    if index.lists is None:
        index.save(path)
        fsync_dir(root)
        return {name: digest(path)}
    faiss = import_faiss()
    lname, built = lists_name(name), index.lists
    written.append(root / lname)
    _ondisk(index.index).filename = lname  # found beside the .faiss file when read
    tmp = built.parent / name
    faiss.write_index(index.index, str(tmp))
    for p in (tmp, built):
        usual_modes(p)
        with open(p, "rb+") as f:
            os.fsync(f.fileno())  # the mapped writes of the merge too
    os.replace(built, root / lname)
    os.replace(tmp, path)
    fsync_dir(root)
    shutil.rmtree(built.parent, ignore_errors=True)
    index.lists = root / lname
    return {name: digest(path), lname: digest(root / lname)}


def load(root: Path, manifest: dict, check: bool) -> VectorIndex | None:
    """The base a manifest names (None: none yet); ``FileNotFoundError`` when its file is gone
    (a rebuild removed it since the snapshot was pinned). ``check``: refuse files that differ
    from their digests (sizes and first/last MiB)."""
    spec = IndexSpec.from_dict(manifest["index"]["spec"])
    dim, base = manifest["encoder"]["dim"], manifest["base"]
    if not base["file"]:
        return None
    path = Path(root) / base["file"]
    if not path.is_file():
        raise FileNotFoundError(path)
    lists = base.get("lists")
    names = [base["file"], *([lists] if lists else [])]
    if check:
        refuse_damaged(root, differs(root, {n: manifest["files"][n] for n in names}))
    if not lists:
        return VectorIndex.load(path, spec, dim)
    want = manifest["files"][lists]["bytes"]
    try:
        have = (Path(root) / lists).stat().st_size
    except OSError as exc:
        raise CompsearchError(f"index {root} is damaged: {lists}: {exc.strerror}") from None
    if have != want:
        refuse_damaged(root, [f"{lists} has {have} bytes, the manifest recorded {want}"])
    flags = import_faiss().IO_FLAG_ONDISK_SAME_DIR | import_faiss().IO_FLAG_READ_ONLY
    with quiet_stdout():
        loaded = VectorIndex.load(path, spec, dim, flags)
    loaded.lists = Path(root) / lists
    return loaded


def kept(root: Path, current: str | None) -> set[str]:
    """The base files garbage collection keeps: the current base and the one before it (a
    reader that pinned its snapshot before the last rebuild still loads it), with their lists."""
    older = sorted(
        p.name for p in root.iterdir() if BASE_RE.fullmatch(p.name) and current and p.name < current
    )
    bases = {b for b in (current, *older[-1:]) if b}
    return bases | {lists_name(b) for b in bases}


def is_base(name: str) -> bool:
    return bool(BASE_RE.fullmatch(name) or LISTS_RE.fullmatch(name))


def _ondisk(index):
    faiss = import_faiss()
    return faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)


@contextlib.contextmanager
def quiet_stdout():
    """Swallow what C code prints on file descriptor 1 (flushing C's buffer before restoring)."""
    import ctypes

    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
