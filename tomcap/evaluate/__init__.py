"""Evaluation stage: COCO caption metrics identical to pycocoevalcap (but faster), CLIP-based
metrics, modality-gap figures and readable reports.

Public API::

    run_evaluate(config, data_dir, generate=None, force=False) -> ArtifactRef   # stage protocol
    evaluate_to_dir(config, out, generate=None) -> ArtifactRef                   # CLI --out
    score_items([EvalItem, ...]) -> [CocoScores, ...]                            # metrics only
"""
from .coco_metrics import METRIC_NAMES, CocoScores, EvalItem, score_items
from .loading import PairedKeys, References, Results, align, load_references, load_results
from .config import EvaluateConfig
from .stage import SPEC, evaluate_to_dir, run_evaluate, upstream_fingerprints

__all__ = [
    "METRIC_NAMES",
    "SPEC",
    "CocoScores",
    "EvalItem",
    "EvaluateConfig",
    "PairedKeys",
    "References",
    "Results",
    "align",
    "evaluate_to_dir",
    "load_references",
    "load_results",
    "run_evaluate",
    "score_items",
    "upstream_fingerprints",
]
