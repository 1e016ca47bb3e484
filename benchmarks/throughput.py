"""Encoder throughput: compsearch's encode() against a naive fp32 Hugging Face loop, same texts.

The naive loop is what one writes first: ``AutoModelForCausalLM`` in fp32, texts in their given
order in fixed batches padded to the longest, ``output_hidden_states=True`` (so the LM head's
full-vocabulary logits are computed too), mean-pool the memory positions. compsearch's path: the
dtype it picks (bf16 where the CPU/GPU runs it natively, else fp32), no LM head, batches sorted by
length. Both produce the same kind of embedding; the benchmark checks they agree (cosine).

    python -m benchmarks.throughput            # 128 real paragraphs
    python -m benchmarks.throughput --texts 512
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from .common import machine_info, matmul_tflops, save, stdlib_paragraphs


class NaiveLoop:
    """The straightforward fp32 loop: CausalLM forward with hidden states, texts in given order."""

    def __init__(self, base_path, memory: torch.Tensor, adapter=None, depth: int | None = None):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from compsearch.encoder import truncate_config

        cfg = AutoConfig.from_pretrained(base_path)
        cfg.is_causal = False
        if depth is not None:  # a compact student runs the first ``depth`` layers, then the norm
            truncate_config(cfg, depth)
        self.model = AutoModelForCausalLM.from_pretrained(
            base_path, config=cfg, dtype=torch.float32
        ).eval()
        if (
            adapter is not None
        ):  # a trained encoder's LoRA (on the backbone), merged the usual peft way
            self.model.model = _merged(self.model.model, *adapter)
        self.tok = AutoTokenizer.from_pretrained(base_path)
        self.memory = memory.float()

    def encode(self, texts, batch_size: int) -> np.ndarray:
        from compsearch.encoder import memory_inputs, pool_memory

        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                ids = self.tok(texts[s : s + batch_size], truncation=True, max_length=512)[
                    "input_ids"
                ]
                inputs, attn, mem = memory_inputs(
                    self.model.get_input_embeddings(), self.memory, ids, self.tok.pad_token_id
                )
                res = self.model(
                    inputs_embeds=inputs, attention_mask=attn, output_hidden_states=True
                )
                v = pool_memory(res.hidden_states[-1], mem)
                out.append(torch.nn.functional.normalize(v, dim=-1).numpy())
        return np.concatenate(out)


def _merged(backbone, adapter_config: dict, tensors: dict):
    import json
    import tempfile
    from pathlib import Path

    from safetensors.torch import save_file

    from compsearch.fastpath import merge_adapter

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "adapter_config.json").write_text(json.dumps(adapter_config))
        save_file(
            {k: v.float().contiguous() for k, v in tensors.items()},
            str(Path(d) / "adapter_model.safetensors"),
        )
        return merge_adapter(backbone, Path(d))


@click.command()
@click.option("--texts", "n", default=128, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--repeats", default=2, show_default=True, help="Interleaved runs; best time kept.")
@click.option("--model", default=None, help="Encoder (default: compsearch's default).")
@click.option("--stem", default="throughput", show_default=True,
              help="Report name under benchmarks/results/ (one per machine kind, e.g. throughput-fp32).")
def main(n, batch_size, repeats, model, stem):
    from compsearch import Encoder

    texts = stdlib_paragraphs(n)
    enc = Encoder.load(model)
    enc32 = enc if enc.dtype == torch.float32 else Encoder.load(model, dtype="float32")
    depth = enc.model.config.num_hidden_layers
    naive = NaiveLoop(enc.base_path, enc.memory.cpu(), enc.adapter, depth=depth)
    for e in (enc, enc32):
        e.encode(texts[:2])  # warm-up every path
    naive.encode(texts[:2], batch_size)
    tokens = sum(min(c, enc.config.max_length) for c in enc.count_tokens(texts))
    # Interleave repetitions and keep each path's best time: robust to load from other processes.
    fast_times, fp32_times, naive_times = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fast = enc.encode(texts, batch_size=batch_size)
        fast_times.append(time.perf_counter() - t)
        if enc32 is not enc:
            t = time.perf_counter()
            enc32.encode(texts, batch_size=batch_size)
            fp32_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        slow = naive.encode(texts, batch_size)
        naive_times.append(time.perf_counter() - t)
    t_fast, t_naive = min(fast_times), min(naive_times)
    t_fp32 = min(fp32_times) if fp32_times else t_fast
    tokens_naive = tokens
    agreement = float(np.mean(np.sum(fast * slow, axis=1)))

    # model FLOPs utilisation: ~2 x params FLOPs per token through the transformer body
    params = sum(p.numel() for p in enc.model.parameters())
    dtype = str(enc.dtype).replace("torch.", "")
    peak = matmul_tflops(dtype)
    achieved = 2 * params * tokens / t_fast / 1e12
    mfu = achieved / peak
    # the yardstick is the bf16 rate; where the encoder runs fp32 (no native bf16), say both
    peak_bf16 = peak if dtype == "bfloat16" else matmul_tflops("bfloat16", n=512)
    data = {
        "machine": machine_info(),
        "encoder": enc.name,
        "texts": n,
        "tokens": tokens,
        "batch_size": batch_size,
        "repeats": repeats,
        "compsearch": {
            "dtype": dtype,
            "seconds": t_fast,
            "all_seconds": fast_times,
            "tokens_per_s": tokens / t_fast,
        },
        "naive_fp32_hf": {
            "seconds": t_naive,
            "all_seconds": naive_times,
            "tokens_per_s": tokens_naive / t_naive,
        },
        "depth": depth,
        "compsearch_fp32": {"seconds": t_fp32, "all_seconds": fp32_times or fast_times},
        "speedup": t_naive / t_fast,
        "speedup_fp32": t_naive / t_fp32,
        "mean_cosine_agreement": agreement,
        "achieved_tflops": achieved,
        "matmul_tflops": peak,
        "mfu": mfu,
        "bf16_matmul_tflops": peak_bf16,
        "mfu_vs_bf16": achieved / peak_bf16,
    }
    md = (
        f"# Encoder throughput\n\n`python -m benchmarks.throughput --texts {n} --batch-size {batch_size} --repeats {repeats}"
        f"{'' if stem == 'throughput' else ' --stem ' + stem}`"
        f" on {data['machine']['cpu']} ({data['machine']['cores']} cores, "
        f"{data['machine']['torch_threads']} torch threads), "
        f"{data['machine']['when']}\n\n"
        f"{n} real paragraphs from the Python standard library, {tokens} tokens; the encoder "
        f"`{enc.fingerprint[:12]}` at its depth ({depth} layers) on every path; best of "
        f"{repeats} interleaved runs per path.\n\n"
        "| path | dtype | tokens/s | seconds |\n| --- | --- | ---: | ---: |\n"
        f"| naive HF loop (CausalLM, unsorted, LM head) | float32 | {tokens_naive / t_naive:,.0f} | {t_naive:.1f} |\n"
        + (
            f"| compsearch `Encoder.encode` | float32 | {tokens / t_fp32:,.0f} | {t_fp32:.1f} |\n"
            if fp32_times
            else ""
        )
        + f"| compsearch `Encoder.encode` | {dtype} | {tokens / t_fast:,.0f} | {t_fast:.1f} |\n\n"
        f"Speed-up: **{data['speedup']:.2f}x**"
        + (f" ({data['speedup_fp32']:.2f}x of it at the same dtype, fp32)" if fp32_times else "")
        + f". Embeddings agree: mean cosine {agreement:.4f}. "
        f"Achieved {achieved * 1e3:.1f} GFLOP/s (2 x parameters per token). Measured {dtype} matmul peak "
        f"{peak:.3f} TFLOP/s: model FLOPs utilisation {mfu:.1%}"
        + (
            " (over 100%: the one-off matmul measurement was slowed by other load; compare runs "
            "by tokens/s)."
            if mfu > 1
            else "."
        )
        + (
            ""
            if dtype == "bfloat16"
            else f" Measured bf16 matmul rate {peak_bf16 * 1e3:.2f} GFLOP/s ({peak / peak_bf16:.0f}x below "
            f"{dtype}: no native bf16 here), which is why the encoder runs {dtype}; the encoder's "
            f"rate is {achieved / peak_bf16:.1f}x that bf16 rate."
        )
        + "\n"
    )
    print(md)
    print(f"written to {save(stem, data, md)}")


if __name__ == "__main__":
    main()
