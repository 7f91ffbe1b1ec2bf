"""Augmentation ablation on the real datasets: train from scratch with each augmentation on and off at
a fixed number of updates (same seed, same model, same recipe), then validation AP.

    python -m bench.ablation                       # fruit and raccoon, every variant: the full run
    python -m bench.ablation --quick               # 2 updates per run on a tiny model: checks it works
    python -m bench.ablation --datasets raccoon --variants baseline +mosaic --updates 300

The budget is a FIXED NUMBER OF UPDATES, not minutes: the CPU is shared, so a wall-clock budget would
give each run however many updates the other processes left it, and compare loads, not augmentations.
The default, ``--updates 600``, is about 10-14 minutes of training per run on a quiet 2-core CPU with
native bf16 (ResNet-18, 320/533 px, batch 8: 0.96-1.50 s per update measured, mosaic and multi-scale at
the slow end); in fp32 on a CPU without native bf16, 6-8 s. Each run prints its own seconds per update.
Prints a Markdown table of val AP / AP50 and writes every run's figures to ``OUT/ablation.json`` (run
folders under OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Every variant starts from the cpu recipe's augmentation (flip 0.5 + colour jitter) and changes what it names.
BASELINE: dict[str, Any] = {"hflip": 0.5, "photometric": True, "multi_scale": None, "scale_jitter": None, "mosaic": 0.0}
MULTI_SCALE, SCALE_JITTER, MOSAIC = (256, 320), (0.5, 1.5), 0.5  # multi-scale: the official 640-800 at 320 px
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"hflip": 0.0, "photometric": False},
    "baseline": {},
    "no-flip": {"hflip": 0.0},
    "no-colour": {"photometric": False},
    "+multi-scale": {"multi_scale": MULTI_SCALE},
    "+scale-jitter": {"scale_jitter": SCALE_JITTER},
    "+mosaic": {"mosaic": MOSAIC},
    "all": {"multi_scale": MULTI_SCALE, "scale_jitter": SCALE_JITTER, "mosaic": MOSAIC},
    "recipe-before": {},  # the baseline's augmentation on the cpu recipe's model before issue 16 (below)
    "smoothed-giou": {},  # the baseline's augmentation, the official +1 smoothing of the IoU loss (below)
}
# Model changes per variant, over the cpu recipe's model (RECIPE_MODEL: softplus regression, plain GIoU):
# "recipe-before" is the cpu recipe before issue 16 (relu regression), for "the default must not be worse
# than before"; "smoothed-giou" is the official smoothed IoU loss, which the cpu recipe had for a while.
MODEL_VARIANTS: dict[str, dict[str, Any]] = {"recipe-before": {"head.regression": "relu"},
                                             "smoothed-giou": {"loss.iou_smoothing": 1.0}}
DATASETS = ("fruit", "raccoon")
# The measured model: the demo's ResNet-18 FCOS at 320 px (the official 800/1333 ratio for the longer side).
MODEL: dict[str, Any] = {"backbone": "resnet18", "fpn_channels": 128, "head_convs": 2,
                         "input.min_size": 320, "input.max_size": 533}
TRAIN: dict[str, Any] = {"batch_size": 8, "amp": True, "workers": 2}
QUICK_MODEL: dict[str, Any] = {"backbone": "resnet18", "fpn_channels": 32, "head_convs": 1,
                               "input.min_size": 128, "input.max_size": 213}
QUICK_MULTI_SCALE = (112, 128)


def data_root(given: str | None, quick: bool) -> Path:
    """The folder holding fruit/ and raccoon/: --data-root, $FCOS_SHARED_DATA or ../shared/data beside the
    checkout; a --quick run falls back to the subsets vendored in tests/assets."""
    root = Path(given or os.environ.get("FCOS_SHARED_DATA", REPO.parent / "shared" / "data"))
    if all((root / name).is_dir() for name in DATASETS) or given:
        return root
    if quick:
        print(f"ablation: no real datasets at {root}; --quick uses the subsets in tests/assets (no figures)",
              file=sys.stderr)
        return REPO / "tests" / "assets"
    raise SystemExit(f"ablation: the real datasets fruit/ and raccoon/ are not at {root}: the ablation trains on "
                     "them (give --data-root DIR or set FCOS_SHARED_DATA; --quick alone runs on the test subsets)")


def run_one(dataset: Path, variant: str, updates: int, out: Path, *, quick: bool, seed: int) -> dict[str, Any]:
    """Train one variant from scratch for ``updates`` updates; its val metrics and timing."""
    from fcos.engine.train_config import cpu_from_scratch, recipe_model
    from fcos.engine.trainer import Trainer
    from fcos.model.options import model_config_for

    changes = {**BASELINE, **VARIANTS[variant]}
    if quick and changes["multi_scale"]:
        changes["multi_scale"] = QUICK_MULTI_SCALE
    model = {**(QUICK_MODEL if quick else MODEL), **recipe_model("cpu"), **MODEL_VARIANTS.get(variant, {})}
    # 1 class: Trainer.from_config sets the dataset's own
    model_cfg = model_config_for(1, backbone=model.pop("backbone"), fpn_channels=model.pop("fpn_channels"),
                                 head_convs=model.pop("head_convs"), **model)
    train = {**TRAIN, **({"batch_size": 2, "workers": 0} if quick else {})}
    cfg = cpu_from_scratch(data=str(dataset), out=str(out / dataset.name / variant), max_iters=updates, seed=seed,
                           progress=not quick, val_images=0 if quick else 16, **train, **changes)
    trainer = Trainer.from_config(model_cfg, cfg)
    summary = trainer.run()
    val = summary["val"]
    return {"dataset": dataset.name, "variant": variant, "augmentation": {k: changes[k] for k in BASELINE},
            "updates": summary["iteration"], "seed": seed, "precision": trainer.precision.name, "AP": val["AP"], "AP50": val["AP50"], "AP75": val["AP75"],
            "train_seconds": summary["train_seconds"], "seconds_per_update": summary["train_seconds"] / max(1, summary["iteration"]),
            "boxes": summary["boxes"]}


def table(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per variant, val AP / AP50 per dataset."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    variants = list(dict.fromkeys(r["variant"] for r in records))
    by_key = {(r["dataset"], r["variant"]): r for r in records}
    lines = ["| variant | " + " | ".join(f"{d} AP | {d} AP50" for d in datasets) + " |",
             "| --- | " + " | ".join("---: | ---:" for _ in datasets) + " |"]
    for variant in variants:
        cells = []
        for d in datasets:
            r = by_key.get((d, variant))
            cells += [f"{r['AP']:.3f}", f"{r['AP50']:.3f}"] if r else ["", ""]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="folder holding fruit/ and raccoon/ (default: ../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--updates", type=int, default=600, help="optimizer updates per run (the fixed budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/ablation", help="run folders and ablation.json")
    parser.add_argument("--quick", action="store_true", help="2 updates on a tiny model: checks that it runs")
    args = parser.parse_args(argv)
    updates = 2 if args.quick else args.updates
    root = data_root(args.data_root, args.quick)
    missing = [name for name in args.datasets if not (root / name).is_dir()]
    if missing:
        raise SystemExit(f"ablation: {', '.join(missing)} not found in {root}")
    out = Path(args.out)
    records = []
    for name in args.datasets:
        for variant in args.variants:
            record = run_one(root / name, variant, updates, out, quick=args.quick, seed=args.seed)
            records.append(record)
            print(f"ablation {name} {variant}: AP {record['AP']:.4f} AP50 {record['AP50']:.4f} "
                  f"({record['updates']} updates, {record['seconds_per_update']:.2f} s/update)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps({"updates": updates, "quick": args.quick, "data_root": str(root),
                                                   "runs": records}, indent=1))
    print(table(records))
    print(f"wrote {out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
