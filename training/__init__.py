"""LLM2Comp training recipe for compsearch (run from the repository root: ``python -m training``).

Stages: ``ctkd`` / ``nll`` / ``rc`` (stage-1 pretext objectives), ``ucl`` (SimCSE), ``scl``
(supervised contrastive with hard negatives). See ``training/README.md``.
"""

from .config import STAGES, TrainConfig, load_config

__all__ = ["STAGES", "TrainConfig", "load_config"]
