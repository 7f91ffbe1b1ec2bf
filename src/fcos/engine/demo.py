"""``make demo``: generate the shapes dataset, train a ResNet-18 FCOS from scratch on the CPU within a
time budget, evaluate it with COCO metrics and draw its predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcos.data import generate_shapes
from fcos.engine.train_config import cpu_from_scratch, recipe_model
from fcos.engine.trainer import train
from fcos.model.options import model_config_for

__all__ = ["DEMO_MODEL", "DEMO_TRAIN", "run_demo"]

# Chosen by measurement on a 2-core CPU (see README "Demo"): updates per minute matter most, so a
# small input, a 128-channel FPN and 2-conv towers, bf16 autocast (where the CPU has native bf16;
# fcos.utils.devices.autocast_dtype) and AdamW with cosine decay.
DEMO_MODEL: dict[str, Any] = {"backbone": "resnet18", "img_size": 160, "fpn_channels": 128, "head_convs": 2}
DEMO_TRAIN: dict[str, Any] = {"batch_size": 8, "lr": 2e-3, "amp": True, "epochs": 1000}


def run_demo(out: str | Path = "runs/demo", *, data_dir: str | Path = "data/shapes", time_budget: float = 600.0,
             num_train: int | None = None, num_val: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Returns the training summary (with the final validation metrics under "val")."""
    out, data_dir = Path(out), Path(data_dir)
    if not (data_dir / "annotations" / "val.json").is_file():
        sizes = {k: v for k, v in (("num_train", num_train), ("num_val", num_val)) if v is not None}
        generate_shapes(data_dir, **sizes)
        print(f"generated the shapes dataset in {data_dir}")
    model_cfg = model_config_for(3, **DEMO_MODEL, **recipe_model("cpu"))
    train_cfg = cpu_from_scratch(data=str(data_dir), out=str(out), time_budget=time_budget, progress=progress, **DEMO_TRAIN)
    summary = train(model_cfg, train_cfg)
    val = summary["val"]
    print(f"\ndemo: COCO AP {val['AP']:.3f}  AP50 {val['AP50']:.3f}  AP75 {val['AP75']:.3f} after "
          f"{summary['iteration']} updates in {summary['train_seconds'] / 60:.1f} min of training")
    print(f"outputs in {out}: loss_curve.png, val_predictions.png, pr_curves.png, confusion_matrix.png, "
          "per_class.csv, metrics.jsonl, best.pt, last.pt")
    return summary
