"""``compsearch serve``: the HTTP API in-process (uvicorn on 127.0.0.1) and the CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from compsearch import Retriever  # noqa: E402
from compsearch.server import create_app  # noqa: E402
from conftest import write_corpus  # noqa: E402


@pytest.fixture
def server(tmp_path, tiny_encoder):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([write_corpus(tmp_path / "docs")])
    srv = uvicorn.Server(uvicorn.Config(create_app(r), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, r
    srv.should_exit = True
    thread.join(timeout=10)


def test_search_add_get_delete_health(server):
    client, r = server
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["chunks"] == r.count() > 0
    res = client.post("/search", json={"query": "rotate log file", "k": 2}).json()["results"]
    assert len(res) == 2 and {"source", "start_line", "score", "text"} <= set(res[0])
    assert client.post(
        "/add", json={"texts": ["cookie header parse"], "ids": ["n1"], "metadata": {"lang": "en"}}
    ).json() == {"ids": ["n1"]}
    got = client.post("/get", json={"ids": ["n1"]}).json()["results"]
    assert got[0]["text"] == "cookie header parse" and got[0]["metadata"] == {"lang": "en"}
    hits = client.post("/search", json={"query": "cookie", "k": 3, "where": {"lang": "en"}}).json()
    assert [h["doc_id"] for h in hits["results"]] == ["n1"]
    assert client.post("/delete", json={"ids": ["n1"]}).json() == {"deleted": 1}
    assert client.post("/delete", json={"ids": ["n1"]}).json() == {"deleted": 0}
    assert client.get("/health").json()["chunks"] == health["chunks"]


def test_openai_compatible_embeddings(server):
    client, r = server
    out = client.post(
        "/v1/embeddings", json={"input": ["json parse", "log file"], "model": "x"}
    ).json()
    assert out["object"] == "list" and out["model"] == "x" and len(out["data"]) == 2
    assert out["data"][1]["index"] == 1 and len(out["data"][0]["embedding"]) == r.encoder.dim
    single = client.post("/v1/embeddings", json={"input": "json parse"}).json()
    assert single["data"][0]["embedding"] == pytest.approx(out["data"][0]["embedding"], abs=1e-5)
    assert single["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/search", {"query": "x", "k": 0}, 422),
        ("/search", {"k": 3}, 422),
        ("/add", {"texts": ["a b"], "ids": ["1", "2"]}, 400),
        ("/add", {"texts": ["   "]}, 400),
        ("/v1/embeddings", {"input": []}, 400),
        ("/delete", {"ids": [1.5]}, 422),
    ],
)
def test_bad_requests_are_client_errors(server, path, body, status):
    client, _ = server
    resp = client.post(path, json=body)
    assert resp.status_code == status
    if status == 400:
        assert "\n" not in resp.json()["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_serve_subprocess(tmp_path, tiny_encoder):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.index([write_corpus(tmp_path / "docs")])
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "compsearch",
            "serve",
            "--index",
            str(tmp_path / "ix"),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, up = time.time() + 120, False
        while time.time() < deadline and proc.poll() is None and not up:
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.3)
        assert up, proc.stderr.read() if proc.poll() is not None else "server did not start"
        res = httpx.post(
            f"http://127.0.0.1:{port}/search", json={"query": "json parse", "k": 1}, timeout=30
        ).json()
        assert len(res["results"]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
