"""`compsearch --help`, `info` and errors start without torch; `info` shows the encoder's depth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from compsearch.cli import main

from conftest import write_corpus

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from compsearch.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "transformers", "peft", "faiss") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _probe(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    heavy = [line for line in res.stderr.splitlines() if line.startswith("HEAVY=")]
    assert heavy, res.stderr
    return res, heavy[-1][len("HEAVY=") :]


def test_help_info_and_errors_do_not_import_torch(tiny_base, tmp_path):
    res, heavy = _probe("--help")
    assert res.returncode == 0 and "query" in res.stdout and heavy == ""
    res, heavy = _probe("info", "--index", tmp_path / "none")
    assert res.returncode == 1 and "no index" in res.stderr and "torch" not in heavy
    res, heavy = _probe("query", "  ", "--index", tmp_path / "none")
    assert res.returncode == 1 and "Traceback" not in res.stderr and "torch" not in heavy

    ix = tmp_path / "ix"
    r = CliRunner().invoke(
        main,
        [
            "index",
            str(write_corpus(tmp_path / "docs")),
            "--index",
            str(ix),
            "--model",
            str(tiny_base),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    res, heavy = _probe("info", "--index", ix)
    assert res.returncode == 0 and "fingerprint" in res.stdout and "torch" not in heavy
    assert "layers" in res.stdout and "all of the base model's" in res.stdout
    # an index whose manifest records a depth shows it
    manifest = json.loads((ix / "manifest.json").read_text())
    manifest["encoder"]["num_layers"] = 6
    (ix / "manifest.json").write_text(json.dumps(manifest))
    r = CliRunner().invoke(main, ["info", "--index", str(ix)])
    assert r.exit_code == 0 and any(
        line.split()[:2] == ["layers", "6"] for line in r.output.splitlines()
    )
