"""The measurements of docs/small-objects.md: one checkpoint evaluated on a dataset split in several
inference modes (whole image, sliced, sliced + whole image, TTA, sliced + TTA, merger variants), one JSON
line per mode with AP, AP50, APs and milliseconds per image, all through the code users run
(:class:`fcos.predict.Predictor` and :func:`fcos.evaluation.run_evaluation`).

    python tools/small_objects.py --weights runs/x/best.pt --data data/canvas --modes whole sliced sliced+full

A mode is a name of :data:`MODES`; ``--slice`` is the tile size of the ``sliced`` modes for a checkpoint
trained on whole images (a tile-trained one slices by its own, ``--slice auto``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from fcos.data import load_annotations, remap_classes  # noqa: E402
from fcos.evaluation import run_evaluation  # noqa: E402
from fcos.predict import Predictor  # noqa: E402
from fcos.predict.options import InferenceOptions  # noqa: E402

# name -> changes of InferenceOptions ("SLICE": the --slice given, or auto for a tile-trained checkpoint)
MODES: dict[str, dict[str, Any]] = {
    "whole": {"slice": None},
    "sliced": {"slice": "SLICE", "full_image": False},
    "sliced+full": {"slice": "SLICE", "full_image": True},
    "sliced-nmm": {"slice": "SLICE", "full_image": False, "merge": "nmm"},
    "sliced+full-nmm": {"slice": "SLICE", "full_image": True, "merge": "nmm"},
    "sliced-wbf": {"slice": "SLICE", "full_image": False, "merge": "wbf"},
    "sliced-overlap0": {"slice": "SLICE", "full_image": False, "slice_overlap": 0.0},
    "sliced-overlap0.4": {"slice": "SLICE", "full_image": False, "slice_overlap": 0.4},
    "sliced-iou0.6": {"slice": "SLICE", "full_image": False, "merge_iou": 0.6},
    # "tta" and "sliced+tta" are the default --tta (flip x 0.83, 1, 1.2); "-flip" modes mirror only
    "tta": {"slice": None, "tta": True},
    "sliced+tta": {"slice": "SLICE", "full_image": False, "tta": True},
    "tta-flip": {"slice": None, "tta": True, "tta_scales": (1.0,)},
    "tta-flip-wbf": {"slice": None, "tta": True, "tta_scales": (1.0,), "merge": "wbf"},
    "tta-flip-nmm": {"slice": None, "tta": True, "tta_scales": (1.0,), "merge": "nmm"},
    "sliced+tta-flip": {"slice": "SLICE", "full_image": False, "tta": True, "tta_scales": (1.0,)},
    "tta-up": {"slice": None, "tta": True, "tta_scales": (1.0, 1.25)},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--modes", nargs="+", default=["whole", "sliced", "sliced+full", "tta", "sliced+tta"],
                        choices=sorted(MODES))
    parser.add_argument("--slice", type=int, default=None, help="tile size for a whole-image checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="", help="a name for the checkpoint in the output")
    parser.add_argument("--images", type=int, default=None, help="the first N images of the split only (timing runs)")
    parser.add_argument("--time-rounds", type=int, default=0,
                        help="no AP: ms per image of each mode, the median of this many alternating rounds")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = Predictor(args.weights, options=InferenceOptions(slice=None))
    data = remap_classes(load_annotations(args.data, args.split), base.class_names)
    if args.images:
        data = dataclasses.replace(data, records=data.records[: args.images])
    if args.time_rounds:
        return time_modes(base, data, args)
    for mode in args.modes:
        predictor = base.with_options(mode_options(mode, base, args.slice))
        options = predictor.options
        model = predictor.model if predictor.plain else predictor.as_detector()
        start = time.perf_counter()
        metrics = run_evaluation(model, data, batch_size=1, workers=2, progress=False).metrics
        ms = (time.perf_counter() - start) * 1000 / len(data)
        print(json.dumps({"checkpoint": args.label or args.weights, "data": args.data, "mode": mode,
                          "views": options.describe(base.tile), "AP": round(metrics["AP"], 4),
                          "AP50": round(metrics["AP50"], 4), "AP75": round(metrics["AP75"], 4),
                          "APs": round(metrics["APs"], 4), "ms_per_image": round(ms, 1), "images": len(data)}),
              flush=True)
    return 0


def mode_options(mode: str, base: Predictor, slice_size: int | None) -> InferenceOptions:
    changes = dict(MODES[mode])
    if changes.get("slice") == "SLICE":
        changes["slice"] = "auto" if base.tile is not None and slice_size is None else slice_size
    return dataclasses.replace(InferenceOptions(), **changes)


def time_modes(base: Predictor, data: Any, args: argparse.Namespace) -> int:
    """ms per image (decoded images, detections included) of each mode: rounds alternate the modes so
    that the machine's drift falls on all of them; the median round is reported."""
    from fcos.data.images import read_image

    images = [read_image(r.path) for r in data.records]
    predictors = {mode: base.with_options(mode_options(mode, base, args.slice)) for mode in args.modes}
    for predictor in predictors.values():  # warm-up: first-call set-up is not the mode's cost
        predictor(images[0])
    times: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for _ in range(args.time_rounds):
        for mode, predictor in predictors.items():
            start = time.perf_counter()
            for image in images:
                predictor(image)
            times[mode].append((time.perf_counter() - start) * 1000 / len(images))
    for mode, values in times.items():
        print(json.dumps({"checkpoint": args.label or args.weights, "mode": mode,
                          "views": predictors[mode].options.describe(base.tile),
                          "ms_per_image_median": round(sorted(values)[len(values) // 2], 1),
                          "ms_per_image_rounds": [round(v, 1) for v in values], "images": len(images),
                          "threads": args.threads}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
