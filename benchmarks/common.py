"""Shared helpers for the speed benchmarks: real text samples and machine info."""

from __future__ import annotations

import json
import os
import platform
import random
import sysconfig
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def stdlib_paragraphs(
    n: int, seed: int = 0, min_chars: int = 40, max_chars: int = 2000
) -> list[str]:
    """``n`` real paragraphs (blank-line separated blocks) from the Python standard library.

    Source code and docstrings written by the CPython developers; lengths vary from a line to a
    long block, like the chunks of a real corpus. Deterministic for a given seed and Python.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in stdlib.rglob("*.py")
        if not {"site-packages", "dist-packages", "test", "tests", "idlelib"} & set(p.parts)
    )
    paras = []
    for f in files:
        for block in f.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            block = block.strip()
            if min_chars <= len(block) <= max_chars:
                paras.append(block)
    rng = random.Random(seed)
    if len(paras) < n:
        paras = paras * (n // max(len(paras), 1) + 1)
    return rng.sample(paras, n)


def machine_info() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{_cpu_name()} ({_vector_isa()})",
        "cores": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import faiss

        info["faiss"] = faiss.__version__
        info["faiss_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        info["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _vector_isa() -> str:
    """The CPU's widest vector / matrix extensions, which decide the encoder's dtype and speed here.

    Two machines can both call themselves "AMD EPYC" and differ threefold in this library's speed:
    one with AVX512-BF16 runs the encoder in bf16, one with AVX2 only runs it in fp32.
    """
    try:
        flags = set()
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return platform.machine()
    if not flags:
        return platform.machine()
    found = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"),
                                     ("avx512f", "AVX512"), ("avx2", "AVX2")) if flag in flags]
    return ", ".join(found[:2]) if found else "no AVX2"


def matmul_tflops(dtype_name: str, n: int = 1024, reps: int = 3) -> float:
    """The machine's measured dense matmul rate for a dtype (TFLOP/s), best of ``reps``."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def save(name: str, data: dict, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    return RESULTS / f"{name}.md"
