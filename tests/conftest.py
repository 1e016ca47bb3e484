"""Shared fixtures: a tiny random Llama built from a config (offline, fast) and sample folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "the of and to in is for on with as by at from that this be are it an or was search "
    "index query file chunk vector model token memory encoder python json log rotate size "
    "parse cookie header http request response error value key sort print table data text "
    "line page section heading code function class def return import test run build"
).split()


def make_tiny_base(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """A 2-layer Llama (hidden 32) with a word-level tokenizer, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"])
    tok.train_from_iterator([" ".join(WORDS)] + [w.upper() for w in WORDS], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    fast.save_pretrained(folder)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=1,
        eos_token_id=2,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_base):
    from compsearch import Encoder

    return Encoder.from_base(str(tiny_base), dtype="float32", query_prompt=None)


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path_factory, monkeypatch):
    """Keep tiny-model digests out of the user's cache; the real bundled model keeps its
    conversion in the normal cache so it is converted once per machine, not once per run."""
    if "COMPSEARCH_HOME" not in os.environ and not request.node.get_closest_marker("real_model"):
        monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path_factory.getbasetemp() / "cshome"))


def write_corpus(root: Path) -> Path:
    """A small mixed folder: markdown, python, text, plus things that must be skipped."""
    (root / "guide").mkdir(parents=True, exist_ok=True)
    (root / "guide" / "install.md").write_text(
        "# Install\n\nrun the build and test the index\n\n## From source\n\npython build run test\n"
    )
    (root / "guide" / "logging.md").write_text(
        "# Logging\n\nrotate log file by size\n\nthe log handler can rotate a file\n"
    )
    (root / "code.py").write_text(
        "import json\n\n\ndef parse(text):\n    return json.loads(text)\n\n\n"
        "class Table:\n    def sort(self, key):\n        return key\n"
    )
    (root / "notes.txt").write_text("http request header cookie parse\n\nresponse error value\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    (root / "blank.md").write_text("   \n\n")
    (root / ".hidden.md").write_text("secret search text\n")
    return root
