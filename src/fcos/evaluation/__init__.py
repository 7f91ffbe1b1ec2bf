"""How good a detector is: COCO metrics (:mod:`.coco`), a dataset split evaluated (:mod:`.evaluator`),
PR curves, confusion matrix and per-class tables (:mod:`.diagnostics`) and the drawn validation
predictions (:mod:`.gallery`)."""

from fcos.evaluation.coco import METRIC_NAMES, PRCurves, coco_evaluation, coco_metrics, to_coco_results
from fcos.evaluation.diagnostics import write_diagnostics
from fcos.evaluation.evaluator import EvalResult, evaluate, predict_dataset, run_evaluation

__all__ = [
    "METRIC_NAMES",
    "EvalResult",
    "PRCurves",
    "coco_evaluation",
    "coco_metrics",
    "evaluate",
    "predict_dataset",
    "run_evaluation",
    "to_coco_results",
    "write_diagnostics",
]
