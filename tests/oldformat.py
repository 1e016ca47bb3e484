"""Turn a format 2 index into the format 1 layout older compsearch wrote (generation folder with
its own store and FAISS file, digests in the manifest), to test reading and migrating them."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from compsearch.manifest import file_digests


def to_format_1(root: Path, digests: bool = True) -> Path:
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    gdir = root / f"g{manifest['generation']:06d}"
    gdir.mkdir()
    src = sqlite3.connect(root / "chunks.sqlite")
    dst = sqlite3.connect(gdir / "chunks.sqlite")
    src.backup(dst)
    src.close()
    dst.execute("PRAGMA journal_mode=DELETE")
    dst.execute("DROP TABLE tombstones")
    dst.execute(
        "DELETE FROM meta WHERE key IN ('manifest', 'generation', 'chunk_count', 'content_digest')"
    )
    dst.commit()
    dst.close()
    shutil.copy(root / manifest["base"]["file"], gdir / "vectors.faiss")
    for p in root.iterdir():
        if p.name.startswith(("chunks.sqlite", "base-")):
            p.unlink()
    for key in ("base", "files"):
        manifest.pop(key)
    manifest["format_version"] = 1
    if digests:
        manifest["files"] = file_digests(gdir)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return gdir
