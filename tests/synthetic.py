"""An encoder stand-in for write-path tests in subprocesses: a text's vector is a unit vector
seeded by the text (distinct texts, distinct vectors), so writers need neither torch nor a model
and start in a second instead of ten."""

from __future__ import annotations

import hashlib

import numpy as np

DIM = 32


class TextSeeded:
    dim = DIM
    name = "text-seeded"
    source = None
    fingerprint = f"text-seeded-{DIM}"
    dtype = "float32"
    max_length = 512

    def encode(self, texts, kind="document", **_):
        out = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(f"{kind}:{t}".encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out

    def count_tokens(self, text):  # one text, or a list (what the chunker passes)
        if isinstance(text, str):
            return len(text.split())
        return [len(t.split()) for t in text]

    def manifest_entry(self) -> dict:
        return {
            "source": None,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": DIM,
            "dtype": "float32",
            "kind": "external",
        }
