"""paper: the authors' settings (LLM2Comp, arXiv 2511.17129) on Llama-2-7B; needs GPUs and a network.

Numbers are from the paper/poster and the authors' code (see /work/shared/design/method.md).
Marked "ours" where the sources say nothing. Launch on 8 GPUs, e.g.
``torchrun --nproc_per_node 8 -m training scl --config paper``. Batch sizes are global;
``micro_batch_size=0`` splits them evenly over the processes (stage 1's batch 4: 1, 2 or 4 GPUs);
set it (e.g. ``--set optim.micro_batch_size=32``) to add gradient accumulation when memory is short.
Note: with accumulation, contrastive negatives come from one micro-batch on all processes
(micro_batch_size x processes), not from the whole global batch.

Differences from ``base`` (whose optimisation is already the authors'): the base model, 512-token
texts, the authors' data from the hub, their batch sizes and step counts, no held-out diagnostics set.
"""

from training.configs.base import derive

BASE = "meta-llama/Llama-2-7b-hf"

COMMON = {
    "name": "paper",
    "seed": 42,
    "gradient_checkpointing": True,
    "log_every": 1,
    "data.heldout": [],
    "model.base": BASE,
    "model.num_memory_tokens": 8,
    "model.max_length": 512,
    "model.lora_r": 16,
    "model.lora_alpha": 32,
    "model.lora_dropout": 0.05,
    "optim.micro_batch_size": 0,
}
STAGES = {
    # WikiText-103 passages >= ~1000 characters, < 512 tokens; 32k samples (poster) at batch 4.
    "stage1": {
        "save_every": 500,
        "data.train": [
            {"hub": "Salesforce/wikitext", "config": "wikitext-103-raw-v1", "split": "train"}
        ],
        "data.min_chars": 1000,
        "data.limit": 32000,
        "optim.warmup_steps": 100,  # warmup length: ours
        "optim.max_steps": 8000,
        "optim.batch_size": 4,
    },
    # SimCSE on wiki1m, batch 128, 1000 steps, lr 3e-5, clip 1.0, attention dropout 0.2.
    # Weight decay: the stage-1 value (unstated).
    "ucl": {
        "save_every": 100,
        "data.train": [
            {
                "hub": "princeton-nlp/datasets-for-simcse",
                "data_files": "wiki1m_for_simcse.txt",
                "split": "train",
            }
        ],
        "data.min_chars": 1,
        "data.min_tokens": 1,
        "optim.warmup_steps": 0,
        "optim.max_steps": 1000,
        "optim.batch_size": 128,
    },
    # The public E5 mixture (1,024,000 sampled triples), global batch 1024, lr 1e-4, warmup 200;
    # the best checkpoint is at step 200 (kept: save_every=100, keep all). Put the triples as
    # JSONL {query, positive, negative, instruction} under data_dir/e5/ (as LLM2Vec prepares them).
    "scl": {
        "save_every": 100,
        "keep_checkpoints": 0,
        "data.train": ["e5/*.jsonl"],
        "data.use_record_instructions": True,
        "optim.warmup_steps": 200,
        "optim.max_steps": 1000,
        "optim.batch_size": 1024,
    },
}


def config(stage: str):
    return derive(stage, COMMON, STAGES, where="paper")
