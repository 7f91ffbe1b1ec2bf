"""The measurements behind the ``cpu`` recipe (docs/training.md): one from-scratch run per call at a fixed
number of updates, with the head's health per update, as one JSON line.

    python tools/recipe_study.py --data data/small --variant before --iters 300 --out runs/study/small-before

``--setting issue`` is the issue's command (ResNet-18, 640 px, FPN 128, 2-conv head, batch 4, bf16);
``--setting demo`` is ``make demo``'s model and batch at 160 px. Runs are compared at the same number of
updates (the whole cosine schedule fitted to ``--iters``), never by wall clock: the CPU is shared.
Per update it records the box loss, the positives whose predicted box has zero size ("dead") and the best
positive score, and reports the first update from which the box branch stayed dead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from fcos.engine.hooks import Hook  # noqa: E402
from fcos.engine.train_config import RECIPE_MODEL, TRAIN_PRESETS  # noqa: E402
from fcos.engine.trainer import Trainer, build_hooks  # noqa: E402
from fcos.model.options import model_config_for  # noqa: E402

SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # (model options, train options)
    "issue": ({"backbone": "resnet18", "img_size": 640, "fpn_channels": 128, "head_convs": 2},
              {"batch_size": 4, "amp": True}),
    "demo": ({"backbone": "resnet18", "img_size": 160, "fpn_channels": 128, "head_convs": 2},
             {"batch_size": 8, "amp": True, "lr": 2e-3}),
}
# name -> (model config changes, train config changes) on top of the cpu recipe of this branch
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "before": ({"loss.iou_smoothing": 0.0, "head.regression": "relu"}, {}),  # main before issue 16
    "official_loss": ({"loss.iou_smoothing": 1.0, "head.regression": "relu"}, {}),
    "softplus": ({"loss.iou_smoothing": 0.0, "head.regression": "softplus"}, {}),
    "softplus_official_loss": ({"loss.iou_smoothing": 1.0, "head.regression": "softplus"}, {}),
    "lr1e-3": ({"loss.iou_smoothing": 0.0, "head.regression": "relu"}, {"lr": 1e-3}),
    "recipe": (RECIPE_MODEL["cpu"], {}),  # whatever the cpu recipe now is (its model change included)
}


class Health(Hook):
    """Per update: box loss, dead positives, positives, best positive score."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, int, int, float]] = []

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        s = trainer.model.last_stats
        self.rows.append((trainer.iteration, losses["bbox_regression"], s["dead_boxes"], s["num_positive"], s["top_score"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="recipe")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="issue")
    parser.add_argument("--iters", type=int, required=True, help="optimizer updates (the whole schedule)")
    parser.add_argument("--stop", type=int, help="pause after this many updates (health only, no evaluation)")
    parser.add_argument("--lr", type=float, help="override the learning rate (stress runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_options, train_options = SETTINGS[args.setting]
    model_changes, train_changes = VARIANTS[args.variant]
    train = {**train_options, **train_changes, **({"lr": args.lr} if args.lr else {})}
    cfg = TRAIN_PRESETS["cpu"](data=args.data, out=args.out, max_iters=args.iters, workers=1, progress=False,
                               seed=args.seed, collapse_patience=0, checkpoint_interval=1e9, **train)
    model_cfg = model_config_for(1, **model_options, **model_changes)
    health = Health()
    trainer = Trainer.from_config(model_cfg, cfg, hooks=[*build_hooks(cfg), health])
    start = time.perf_counter()
    summary = trainer.run(stop_at=args.stop)
    dead_from = None
    for it, _, dead, pos, _ in health.rows:
        if pos and dead == pos:
            dead_from = dead_from or it
        else:
            dead_from = None
    val = summary.get("val") or {}
    box = [r[1] for r in health.rows]
    record = {
        "data": args.data, "setting": args.setting, "variant": args.variant, "lr": cfg.base_lr(), "updates": trainer.iteration,
        "minutes": round((time.perf_counter() - start) / 60, 1), "AP": val.get("AP"), "AP50": val.get("AP50"),
        "APs": val.get("APs"), "box_loss_first10": round(sum(box[:10]) / max(1, len(box[:10])), 4),
        "box_loss_last10": round(sum(box[-10:]) / max(1, len(box[-10:])), 4),
        "max_dead_fraction_after_10": round(max((d / p for i, _, d, p, _ in health.rows if p and i > 10), default=0.0), 4),
        "dead_from_update": dead_from,
        "first_update_top_score_over_0.05": next((i for i, *_, top in health.rows if top > 0.05), None),
    }
    print(json.dumps(record), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "health.jsonl").write_text("".join(json.dumps(r) + "\n" for r in health.rows))
    (Path(args.out) / "study.json").write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
