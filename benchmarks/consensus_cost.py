"""What the consensus rerank (``generate.consensus_weight``) costs a demo generation, as a same-run ratio.

Opens the demo's ``full`` variant (trained or reused under --root, ``configs/demo.yaml`` as committed) and captions
the first --images validation images with the committed decoding, alternately with the consensus rerank off and on
(--rounds each, interleaved so the machine's drift hits both alike), and reports the median seconds of each and
their ratio. Only time is measured here; the captions' quality is ``tune_adaptor.py``'s.

    nice -n 5 .venv/bin/python benchmarks/consensus_cost.py --root /tmp/tune \
        --out benchmarks/results/consensus_cost.json
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np
from _demo_world import demo_arguments

SPLIT = "val"


def main(argv: list[str] | None = None) -> int:
    ap = demo_arguments(__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    from _demo_world import full_variant

    from tomcap.demo.splits import split_pipeline_config
    from tomcap.embed.config import ImageEmbedConfig
    from tomcap.embed.store import EmbeddingSet
    from tomcap.generate.session import CaptionSession
    from tomcap.pipeline import run_until
    from tomcap.threads import limit_threads

    dd = str(args.root)
    world, cfg = full_variant(args.config, dd)
    scfg = split_pipeline_config(cfg, world, SPLIT)
    refs = run_until(scfg, dd, "generate")  # train, index and the split's image embeddings (cached after one run)
    limit_threads(1)  # as a demo worker captions
    images = EmbeddingSet.open(refs["test_images"])
    clip_cfg = ImageEmbedConfig.model_validate(images.ref.manifest().config)
    emb = np.asarray(images.array(), np.float32)[:args.images]
    committed = scfg.generate
    if not committed.consensus_weight:
        raise SystemExit("the config's generate.consensus_weight is 0: nothing to measure")
    settings = {"off": committed.model_copy(update={"consensus_weight": 0.0}), "on": committed}
    sessions = {name: CaptionSession.open(g, refs["train"], refs["index"], clip_cfg, images.model_fingerprint)
                for name, g in settings.items()}
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            t = time.perf_counter()
            session.caption_all(emb, progress=False)
            seconds[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    out = {"split": SPLIT, "images": len(emb), "consensus_weight": committed.consensus_weight,
           "consensus_k": committed.consensus_k, "seconds": seconds, "median_s": med,
           "ratio_on_over_off": round(med["on"] / med["off"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
