"""Evaluation stage: COCO caption metrics identical to pycocoevalcap (but faster), CLIP-based
metrics, modality-gap figures and readable reports.

Public API::

    run_evaluate(config, data_dir, generate=None, force=False) -> ArtifactRef   # stage protocol
    evaluate_to_dir(config, out, generate=None) -> ArtifactRef                   # CLI --out
    score_items([EvalItem, ...]) -> [CocoScores, ...]                            # metrics only
"""
from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    **{n: ".coco_metrics" for n in ("METRIC_NAMES", "CocoScores", "EvalItem", "score_items")},
    **{n: ".loading" for n in ("PairedKeys", "References", "Results", "align", "load_references", "load_results")},
    "EvaluateConfig": ".config",
    **{n: ".stage" for n in ("SPEC", "evaluate_to_dir", "run_evaluate", "upstream_fingerprints")},
})
