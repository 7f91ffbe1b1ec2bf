"""half_inference, compile_inference, compile_train_step: fcos against itself in the same process.

- ``half_inference``: ``fcos predict --half`` (bf16 autocast on a CPU with native bf16: AVX512-BF16 / AMX)
  against fp32 (the default: NHWC, Winograd on the large levels), R50-FPN at 800x1088, batch 1, the
  same weights and image. ``ratio`` = fp32 ms / bf16 ms; the detections are compared as sets.
- ``compile_inference`` / ``compile_train_step``: ``model.compile()`` (inductor) against eager on the
  ``make demo`` model (ResNet-18, FPN 128, 2-conv towers): inference at 512x512, batch 1; a training
  update (forward, assignment, losses, backward, fused SGD) at the demo's 160 px, batch 8, fp32. The
  compilation itself is timed once and reported (``compile_s``), outside the rounds.

Rounds alternate between the two sides (``bench.common.compare_rounds``); each side's figure is the
median of its round medians. ``--quick`` runs tiny models and the ``eager`` backend (dynamo capture only): a smoke check.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from bench.common import compare_rounds, emit, nearest_detections
from bench.model_speed import _batch, _models
from fcos import FCOS
from fcos.engine.demo import DEMO_MODEL
from fcos.engine.train_config import recipe_model
from fcos.model.options import model_config_for
from fcos.utils.devices import cpu_has_native_bf16


def _rounds(ours, reference, quick: bool, repeat: int = 3) -> dict[str, Any]:
    ours_rounds, ref_rounds = compare_rounds(ours, reference, rounds=1 if quick else 5, warmup=1, repeat=1 if quick else repeat)
    return {"ours": statistics.median(ours_rounds), "reference": statistics.median(ref_rounds),
            "ours_rounds": [round(v, 1) for v in ours_rounds], "reference_rounds": [round(v, 1) for v in ref_rounds]}


def half_inference(quick: bool) -> list[dict[str, Any]]:
    height, width = (160, 224) if quick else (800, 1088)
    _, model = _models(height, quick)
    model.eval()
    images, _ = _batch(1, height, width, 1)
    with torch.no_grad():  # scores spread over the threshold, as a trained model's: decoding does real work
        model.head.cls_logits.bias.uniform_(-4.0, -1.0)

    @torch.inference_mode()
    def run(half: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
            return model(images)

    box_gap, score_gap = nearest_detections(run(True), run(False))
    t = _rounds(lambda: run(True), lambda: run(False), quick)
    params = {"backbone": "resnet18-fpn64" if quick else "resnet50", "batch": 1, "image": [height, width],
              "threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16()}
    return [emit("half_inference", t["ours"], t["reference"], "ms", params,
                 matched_1px=float((box_gap <= 1.0).float().mean()) if len(box_gap) else 1.0,
                 score_max_diff=float(score_gap[box_gap <= 1.0].max()) if bool((box_gap <= 1.0).any()) else 0.0,
                 detections=len(box_gap), ours_rounds=t["ours_rounds"], reference_rounds=t["reference_rounds"])]


def _demo_model(quick: bool, img_size: int) -> FCOS:
    torch.manual_seed(0)
    spec = {**DEMO_MODEL, "img_size": img_size, **({"fpn_channels": 32, "head_convs": 1} if quick else {})}
    return FCOS(model_config_for(3, **spec, **recipe_model("cpu")))


def _compiled(model: FCOS, quick: bool) -> FCOS:
    return copy.deepcopy(model).compile(backend="eager" if quick else "inductor")


def compile_inference(quick: bool) -> list[dict[str, Any]]:
    size = 128 if quick else 512
    eager = _demo_model(quick, size).eval()
    compiled = _compiled(eager, quick)
    images = [torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))]
    run = torch.inference_mode()(lambda model: model(images))
    start = time.perf_counter()
    first = run(compiled)
    compile_s = time.perf_counter() - start
    box_gap, _ = nearest_detections(first, run(eager))
    t = _rounds(lambda: run(compiled), lambda: run(eager), quick, repeat=5)
    params = {"model": "make demo (resnet18, fpn 128, 2 head convs)", "batch": 1, "image": [size, size],
              "threads": torch.get_num_threads(), "backend": "eager" if quick else "inductor"}
    return [emit("compile_inference", t["ours"], t["reference"], "ms", params, compile_s=compile_s,
                 matched_1px=float((box_gap <= 1.0).float().mean()) if len(box_gap) else 1.0,
                 ours_rounds=t["ours_rounds"], reference_rounds=t["reference_rounds"])]


def compile_train_step(quick: bool) -> list[dict[str, Any]]:
    size, batch = (128, 2) if quick else (160, 8)
    eager = _demo_model(quick, size).train()
    compiled = _compiled(eager, quick)
    images, targets = _batch(batch, size, size, 5)
    targets = [{**t, "labels": t["labels"] % 3} for t in targets]
    steps, losses = {}, {}
    for side, model in (("compiled", compiled), ("eager", eager)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, fused=True)  # lr 0: equal weights

        def step(model=model, optimizer=optimizer):
            total = sum(model(images, targets).values())
            total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return total.detach()

        steps[side] = step
    start = time.perf_counter()
    losses["compiled"] = steps["compiled"]()
    compile_s = time.perf_counter() - start
    losses["eager"] = steps["eager"]()
    t = _rounds(steps["compiled"], steps["eager"], quick)
    params = {"model": "make demo (resnet18, fpn 128, 2 head convs)", "batch": batch, "image": [size, size],
              "boxes_per_image": 5, "precision": "fp32", "threads": torch.get_num_threads(),
              "backend": "eager" if quick else "inductor"}
    rel = float((losses["compiled"] - losses["eager"]).abs() / losses["eager"].abs())
    return [emit("compile_train_step", t["ours"], t["reference"], "ms", params, compile_s=compile_s, loss_rel_diff=rel,
                 ours_rounds=t["ours_rounds"], reference_rounds=t["reference_rounds"])]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return half_inference(quick) + compile_inference(quick) + compile_train_step(quick)


if __name__ == "__main__":
    run()
