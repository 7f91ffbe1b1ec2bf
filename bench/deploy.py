"""deploy_inference: exported models (ONNX Runtime, OpenVINO; fp32, int8) against torchvision's PyTorch FCOS.

For each model, torchvision's FCOS (random init, seeded) is converted to fcos (``fcos.weights.from_torchvision``:
the same weights), exported at a fixed input size with decoding and NMS in the graph, and run through
:class:`fcos.predict.Predictor` (host pre/post-processing included) on one image already at the input
size, batch 1; the reference is torchvision's model called on the same image (its own transform and
postprocessing included), in ``inference_mode``. Rounds alternate between the two (bench.common's
median of alternating rounds); ratio = torchvision ms / deployed ms. Both sides get the same intra-op
threads (``torch.get_num_threads()``, 2 on the project's machine).

int8 models are calibrated on real training images of the fruit dataset (``CALIB_IMAGES``, seed 0); with
random weights their accuracy means nothing (docs/deploy.md measures it on a trained model), their speed
is the int8 network's. The focal-loss prior leaves every score under the threshold, so the times are the
networks' (decoding under load is the ``postprocess`` benchmark); fp32 detections are compared before timing.

fp32 rows come twice: the default export (``conv3x3="auto"``: the FPN-output and head 3x3 convolutions
of levels with >= 32x32 points written as Winograd operators, :func:`fcos.ops.winograd.conv3x3_graph`)
and ``conv3x3="direct"`` (plain Conv nodes), so the table shows what the Winograd graph buys each runtime.

Models: ``r50_800x1088`` (ResNet-50 FPN, the paper's model, 800x1088) and ``r18_512`` (ResNet-18 FPN,
512x512); ``--quick`` runs a ResNet-18 at 128x128 to check that everything runs.
"""

from __future__ import annotations

import statistics
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models import resnet18
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from bench.common import compare_rounds, dataset_path, emit
from fcos.export import Calibration, export
from fcos.predict import Predictor
from fcos.weights import from_torchvision
from fcos.weights.checkpoint import model_checkpoint, save_checkpoint

NUM_CLASSES = 80
CALIB_IMAGES = 16
# name -> (backbone, (H, W))
MODELS = {"r50_800x1088": ("resnet50", (800, 1088)), "r18_512": ("resnet18", (512, 512))}
QUICK_MODELS = {"r18_128": ("resnet18", (128, 128))}
# (runtime, precision, conv3x3): the default exports ("auto": Winograd operators on the large levels of
# fp32 graphs, fcos.ops.winograd.conv3x3_graph), and fp32 with plain Conv nodes to show what that buys.
ROWS = (("onnxruntime", "fp32", "auto"), ("onnxruntime", "fp32", "direct"), ("onnxruntime", "int8", "direct"),
        ("openvino", "fp32", "auto"), ("openvino", "fp32", "direct"), ("openvino", "int8", "direct"))


def _torchvision(backbone: str, size: tuple[int, int]) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"num_classes": NUM_CLASSES, "min_size": min(size), "max_size": max(size)}
    if backbone == "resnet50":
        return fcos_resnet50_fpn(weights=None, weights_backbone=None, **kwargs).eval()
    # torchvision's fcos_resnet50_fpn recipe around a ResNet-18 (P6 from P5, 256-channel FPN)
    body = _resnet_fpn_extractor(resnet18(weights=None, norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                 extra_blocks=LastLevelP6P7(256, 256))
    return TorchvisionFCOS(body, **kwargs).eval()


def _exports(tv: torch.nn.Module, size: tuple[int, int], folder: Path, quick: bool) -> dict[tuple[str, str, str], Path]:
    weights = save_checkpoint(model_checkpoint(from_torchvision(tv), [f"class{i}" for i in range(NUM_CLASSES)]),
                              folder / "model.pt")
    calibration = Calibration(dataset_path("fruit", quick), 2 if quick else CALIB_IMAGES, "train", seed=0)
    onnx_files = {
        ("fp32", "auto"): export(weights, folder / "fp32.onnx", "onnx", img_size=size),
        ("fp32", "direct"): export(weights, folder / "fp32_direct.onnx", "onnx", img_size=size, conv3x3="direct"),
        ("int8", "direct"): export(weights, folder / "int8.onnx", "onnx", img_size=size, int8=calibration),
    }
    files = {}
    for (precision, conv3x3), path in onnx_files.items():
        files["onnxruntime", precision, conv3x3] = path
        files["openvino", precision, conv3x3] = export(path, path.with_suffix(".xml"), "openvino")
    return files


def run(quick: bool = False) -> list[dict[str, Any]]:
    threads = torch.get_num_threads()
    timing = {"rounds": 1, "warmup": 1, "repeat": 1} if quick else {"rounds": 5, "warmup": 1, "repeat": 1}
    records = []
    for name, (backbone, size) in (QUICK_MODELS if quick else MODELS).items():
        tv = _torchvision(backbone, size)
        image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))

        @torch.inference_mode()
        def reference(tv=tv, image=image):
            return tv([image])

        with tempfile.TemporaryDirectory(prefix="fcos-bench-deploy-") as tmp:
            files = _exports(tv, size, Path(tmp), quick)
            for runtime, precision, conv3x3 in ROWS:
                path = files[(runtime, precision, conv3x3)]
                predictor = Predictor(path, num_threads=threads)
                deployed = partial(predictor, image)
                detections = len(deployed()[0]["scores"])
                if precision == "fp32" and detections != len(reference()[0]["scores"]):
                    raise AssertionError(f"{runtime} {precision} {name}: detections differ from torchvision's")
                ours_rounds, ref_rounds = compare_rounds(deployed, reference, **timing)
                params = {"runtime": runtime, "precision": precision, "model": name, "conv3x3": conv3x3,
                          "image": list(size), "batch": 1, "threads": threads, "device": "cpu"}
                records.append(emit("deploy_inference", statistics.median(ours_rounds), statistics.median(ref_rounds),
                                    "ms", params, file_mb=round(_size(path) / 1e6, 1), detections=detections,
                                    ours_rounds_ms=[round(x, 1) for x in ours_rounds],
                                    reference_rounds_ms=[round(x, 1) for x in ref_rounds]))
                del predictor
    return records


def _size(path: Path) -> int:
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    run()
