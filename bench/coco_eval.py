"""eval: COCO bbox evaluation of 500 images of detections, faster-coco-eval vs pycocotools.

Synthetic ground truth (3-12 boxes of 5 classes per image, a few crowd boxes) and detections
(jittered true boxes plus false positives, 100 per image). Both must give the same 12 summary
numbers to 1e-6 before timing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import compare_ms, emit
from fcos.evaluation.coco import METRIC_NAMES, coco_metrics, run_pycocotools

CLASSES = ["a", "b", "c", "d", "e"]


def synthetic(num_images: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        n = int(rng.integers(3, 13))
        wh = rng.uniform(8, 300, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh)
        labels = rng.integers(1, len(CLASSES) + 1, n)
        for k in range(n):
            crowd = int(rng.random() < 0.03)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(labels[k]),
                                "bbox": [*xy[k].tolist(), *wh[k].tolist()], "area": float(wh[k].prod()), "iscrowd": crowd})
        for _ in range(100):
            k = int(rng.integers(0, n))
            if rng.random() < 0.5:  # a jittered true box
                box = np.concatenate([xy[k] + rng.normal(0, 0.1, 2) * wh[k], wh[k] * rng.uniform(0.8, 1.2, 2)])
                label = int(labels[k]) if rng.random() < 0.9 else int(rng.integers(1, len(CLASSES) + 1))
            else:  # a false positive
                size = rng.uniform(8, 200, 2)
                box = np.concatenate([rng.uniform(0, 1, 2) * (np.array([640, 480]) - size), size])
                label = int(rng.integers(1, len(CLASSES) + 1))
            results.append({"image_id": image_id, "category_id": label, "bbox": box.tolist(), "score": float(rng.random())})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_metrics(gt: dict[str, Any], results: list[dict[str, Any]]) -> list[float]:
    return [float(v) for v in run_pycocotools(gt, results).stats]


def run(quick: bool = False) -> list[dict[str, Any]]:
    num_images = 20 if quick else 500
    gt, results = synthetic(num_images)
    ours = coco_metrics(gt, results, CLASSES)
    reference = pycocotools_metrics(gt, results)
    ours_stats = [ours[name] for name in METRIC_NAMES]
    max_diff = float(np.max(np.abs(np.array(ours_stats) - np.array(reference))))
    if max_diff > 1e-6:
        raise AssertionError(f"COCO metrics differ from pycocotools by {max_diff}")
    ours_ms, ref_ms = compare_ms(lambda: coco_metrics(gt, results, CLASSES), lambda: pycocotools_metrics(gt, results),
                                 rounds=1 if quick else 3, warmup=0 if quick else 1, repeat=1 if quick else 3)
    params = {"images": num_images, "detections": len(results), "ground_truth": len(gt["annotations"]), "backend": ours["backend"]}
    return [emit("eval", ours_ms, ref_ms, "ms", params, max_metric_diff=max_diff, AP=round(ours["AP"], 4))]


if __name__ == "__main__":
    run()
