"""Filesystem helpers every on-disk format uses: atomic writes, usual modes, fsync, the cache root.

Nothing here knows about compsearch's formats; the modules that own a format (``encoder``,
``indexdir``, ``models``) call these so that a crash never leaves a half-written file that looks valid.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def cache_home() -> Path:
    """compsearch's cache root: ``$COMPSEARCH_HOME`` or ``~/.cache/compsearch``.

    Converted models, merged weights, digests, training data and benchmark caches live under it.
    """
    return Path(
        os.environ.get("COMPSEARCH_HOME") or Path.home() / ".cache" / "compsearch"
    ).expanduser()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_modes(path: Path) -> None:
    """Give a folder tree (or one file) the modes a plain ``mkdir``/``open`` would have given.

    ``tempfile.mkdtemp``/``mkstemp`` create 0700/0600 entries; once renamed into place they would
    leave a model or an index readable by its owner only.
    """
    path, mask = Path(path), _umask()
    if path.is_file():
        path.chmod(0o666 & ~mask)
        return
    path.chmod(0o777 & ~mask)
    for p in path.rglob("*"):
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Bytes version of ``atomic_write_text``: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_replace_dir(tmp: Path, dest: Path) -> None:
    """Move a fully written folder ``tmp`` to ``dest``, replacing any old one by renames only."""
    tmp, dest = Path(tmp), Path(dest)
    usual_modes(tmp)
    fsync_tree(tmp)
    if not dest.exists():
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dest, old)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync_tree(folder: Path) -> None:
    """fsync every file in a folder tree, then the folders themselves."""
    folder = Path(folder)
    for p in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
