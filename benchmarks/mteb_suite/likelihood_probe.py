"""Why the likelihood reranker is near random: two small probes of the shipped encoder's decoder.

    OMP_NUM_THREADS=1 python -m benchmarks.mteb_suite.likelihood_probe

1. The CTKD task itself: six long Debian package descriptions are cut in half; each second half
   (its first 200 characters) is scored by log p(tail | memory states of each first half) with
   the decoder of ``compsearch.rerank_late`` (mean log-prob per token). Printed: the rank of each
   tail's own memory among the six (0 = best) and the 6 x 6 matrix (rows: tails, columns: memories).
2. Queries: for the first four queries of the Debian task's quick sample, the relevant document
   against eight other documents of the sample (not the search's hard candidates).
"""

from __future__ import annotations

import numpy as np


def main() -> int:
    import torch

    from compsearch import Encoder
    from compsearch.models import resolve_base
    from compsearch.rerank_late import Decoder

    from . import builders as B
    from . import sources as S
    from .tasks import _subsample_retrieval

    torch.set_num_threads(1)
    enc = Encoder.load()
    dec = Decoder(str(resolve_base(enc.config.base_model)))
    _m, files, _u = B.read_task(S.cache_dir() / "tasks" / "DebianPackageRetrieval")
    queries, corpus, qrels = _subsample_retrieval(files, 100, 400, B.SEED)
    docs = {c["id"]: (c.get("title", "") + " " + c["text"]).strip() for c in corpus}
    texts = [t for t in docs.values() if len(t) > 600][:6]
    heads = [t[: len(t) // 2] for t in texts]
    tails = [t[len(t) // 2 :] for t in texts]
    _, states = enc.encode_states(heads, max_length=256)
    m = np.array([dec.score(tail[:200], states) for tail in tails])
    print("own memory's rank per tail (0 best):", [int((m[i] > m[i, i]).sum()) for i in range(6)])
    print(np.round(m, 2))
    for q in queries[:4]:
        rel = [d for d, v in qrels[q["id"]].items() if v > 0 and d in docs]
        ids = rel[:1] + [d for d in list(docs)[:8] if d not in rel]
        _, states = enc.encode_states([docs[d] for d in ids], max_length=256)
        s = dec.score(q["text"], states)
        print(
            f"{q['text'][:60]!r}: relevant {s[0]:.2f}, others {[round(float(x), 2) for x in s[1:]]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
