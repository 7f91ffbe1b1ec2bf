"""ONNX export: network + decoding (+ class-aware batched NMS) in one graph; the preprocessing
contract, class names and config travel in the file's ``metadata_props``.

Preprocessing contract (also stored as JSON under ``metadata_props["preprocessing"]``):

- input ``images``: float32 [B, 3, H, W], RGB in [0, 1]. Each image is resized on the host with the
  model's own rule (:func:`fcos.model.transform.resized_shape`, bilinear, ``align_corners=False``) and
  placed at the top-left corner. The graph normalises with the model's mean/std and zeroes every pixel
  outside ``image_sizes``, exactly as :class:`~fcos.model.transform.InputTransform` pads, so whatever the
  host puts in the padding does not matter.
- input ``image_sizes``: float32 [B, 2], (h, w) of each resized image before padding; boxes are clipped to it.
- H, W: with ``img_size=None`` (the default) they are dynamic and the host pads each image to the next
  multiple of ``size_divisible`` (32): the padded size the PyTorch model uses for a single image, so the
  two give the same detections. With ``img_size=(H, W)`` they are fixed; an image whose resized shape does
  not fit is scaled down further to fit (:func:`onnx_input_shape`). Features near the bottom/right border
  depend on the padded size, so a fixed-size graph matches PyTorch run on the identically padded input,
  not PyTorch's own padding.
- outputs with ``nms=True``: ``boxes`` [B, D, 4] xyxy in resized-image pixels, ``scores`` [B, D],
  ``labels`` [B, D] int64, ``num_detections`` [B] int64; D = ``decode.max_detections``, sorted by
  descending score. With ``nms=False``: ``boxes`` [B, N, 4], ``scores`` [B, N], ``labels`` [B, N], the top
  ``decode.topk_per_level`` thresholded candidates of each of the 5 levels (N = 5 * topk_per_level); the
  caller runs class-aware NMS at ``decode.nms_thresh`` and keeps ``decode.max_detections``.
  Unused rows have label -1, score 0 and a zero box in both cases.

The host maps boxes back to the original image with :func:`fcos.model.transform.scale_boxes`.
Exported with the TorchScript-based exporter (``dynamo=False``) at opset :data:`DEFAULT_OPSET`;
NMS is the ONNX ``NonMaxSuppression`` op (per image and class, in the graph).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms as _nms

from fcos.config import STRIDES, DecodeConfig, FCOSConfig, InputConfig
from fcos.model.points import grid_points
from fcos.model.transform import pad_to_multiple, resize_scale, resized_shape
from fcos.ops.boxes import clip_boxes, ltrb_to_boxes

__all__ = [
    "DEFAULT_OPSET",
    "ExportModule",
    "decode_dense",
    "nms_dense",
    "export_onnx",
    "onnx_input_shape",
    "onnx_inputs",
    "read_metadata",
]

DEFAULT_OPSET = 17
FORMAT = "fcos-onnx"
VERSION = 1
INVALID_SCORE = -1.0  # score of masked candidates inside the graph; every real score is >= 0


def onnx_input_shape(height: int, width: int, config: InputConfig, img_size: Sequence[int] | None = None) -> tuple[int, int]:
    """(h, w) an image of ``height`` x ``width`` is resized to before padding: the model's rule, then
    scaled down further when it must fit a fixed ``img_size`` (H, W)."""
    if img_size is None:
        return resized_shape(height, width, config.min_size, config.max_size)
    scale = min(resize_scale(height, width, config.min_size, config.max_size), img_size[0] / height, img_size[1] / width)
    return int(height * scale), int(width * scale)


def onnx_inputs(
    images: Sequence[Tensor], config: InputConfig, img_size: Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """Host side of the contract: [3, h_i, w_i] float images in [0, 1] -> (``images`` [B, 3, H, W],
    ``image_sizes`` [B, 2] float32 (h, w)), padded at the bottom/right as the export expects."""
    resized = []
    for image in images:
        out_hw = onnx_input_shape(image.shape[-2], image.shape[-1], config, img_size)
        if out_hw != tuple(image.shape[-2:]):
            # size= gives the same sampling as InputTransform's scale_factor + recompute_scale_factor=True.
            image = F.interpolate(image[None].float(), size=out_hw, mode="bilinear", align_corners=False)[0]
        resized.append(image.float())
    if img_size is None:
        height = pad_to_multiple(max(im.shape[-2] for im in resized), config.size_divisible)
        width = pad_to_multiple(max(im.shape[-1] for im in resized), config.size_divisible)
    else:
        height, width = int(img_size[0]), int(img_size[1])
    batch = resized[0].new_zeros((len(resized), 3, height, width))
    for slot, image in zip(batch, resized, strict=True):
        slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
    sizes = torch.tensor([im.shape[-2:] for im in resized], dtype=torch.float32)
    return batch, sizes


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 10); the eager forward has the same semantics.

    boxes [B, N, 4] xyxy, scores [B, C, N] -> selected [K, 3] int64 (image, class, box), per image and
    class in descending score order, at most ``max_per_class`` each; only scores > ``score_threshold``.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float, score_threshold: float) -> Tensor:
        selected = []
        for b in range(boxes.shape[0]):  # eager only (tracing, tests); the graph holds one ONNX op
            for c in range(scores.shape[1]):
                idx = torch.nonzero(scores[b, c] > score_threshold).squeeze(1)
                keep = idx[_nms(boxes[b, idx], scores[b, c, idx], iou_threshold)[:max_per_class]]
                selected.append(torch.stack((torch.full_like(keep, b), torch.full_like(keep, c), keep), 1))
        return torch.cat(selected) if selected else torch.zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.long)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
            center_point_box_i=0,
        )


def decode_dense(
    cls_logits: Tensor,
    box_ltrb: Tensor,
    centerness: Tensor,
    points_xy: Tensor,
    level_sizes: Sequence[Any],
    image_sizes: Tensor,
    num_classes: int,
    config: DecodeConfig,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tensor-only, static-shape version of :class:`fcos.postprocess.Decoder` up to (excluding) NMS.

    Args:
        cls_logits: [B, P, C]; box_ltrb: [B, P, 4] input pixels; centerness: [B, P] logits.
        points_xy: [P, 2] point coordinates; level_sizes: points per level (ints, or traced sizes).
        image_sizes: [B, 2] (h, w) the boxes are clipped to.

    Returns:
        boxes [B, L*K, 4], scores [B, L*K] (``INVALID_SCORE`` where masked), labels [B, L*K] int64,
        with K = ``topk_per_level``: per level, the K best scores that pass the threshold, padded.
    """
    k = config.topk_per_level
    all_boxes, all_scores, all_labels = [], [], []
    start = 0
    for size in level_sizes:
        stop = start + size
        cls_prob = torch.sigmoid(cls_logits[:, start:stop])  # [B, P_l, C]
        scores = torch.sqrt(cls_prob * torch.sigmoid(centerness[:, start:stop])[..., None])
        passed = (cls_prob if config.threshold_on == "cls" else scores) > config.score_thresh
        flat = torch.where(passed, scores, INVALID_SCORE).flatten(1)  # [B, P_l * C]
        # K padding entries make top-k valid for levels with fewer than K (point, class) pairs.
        flat = torch.cat((flat, torch.full_like(flat[:, :1], INVALID_SCORE).expand(-1, k)), 1)
        top_scores, top_idx = flat.topk(k, dim=1)  # [B, K], descending
        point = torch.clamp(top_idx // num_classes, max=size - 1)  # padding entries: any valid index
        labels = top_idx % num_classes
        ltrb = torch.gather(box_ltrb[:, start:stop], 1, point[..., None].expand(-1, -1, 4))  # [B, K, 4]
        xy = points_xy[start:stop][point]  # [B, K, 2]
        all_boxes.append(ltrb_to_boxes(xy, ltrb))
        all_scores.append(top_scores)
        all_labels.append(labels)
        start = stop
    boxes, scores, labels = torch.cat(all_boxes, 1), torch.cat(all_scores, 1), torch.cat(all_labels, 1)
    boxes = clip_boxes(boxes, image_sizes[:, None, :])
    if config.min_box_size > 0:
        small = ((boxes[..., 2:] - boxes[..., :2]) < config.min_box_size).any(-1)
        scores = torch.where(small, INVALID_SCORE, scores)
    valid = scores >= 0
    return boxes, scores, torch.where(valid, labels, -1)


def nms_dense(
    boxes: Tensor, scores: Tensor, labels: Tensor, num_classes: int, keep_max: int, nms_thresh: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Class-aware NMS on :func:`decode_dense` output [B, N, ...], then the best ``keep_max`` (<= N) per image.

    Returns boxes [B, D, 4], scores [B, D], labels [B, D], num_detections [B], unused rows zeroed / -1.
    """
    classes = torch.arange(num_classes, device=labels.device)
    per_class = torch.where(labels[:, None, :] == classes[None, :, None], scores[:, None, :], INVALID_SCORE)  # [B, C, N]
    selected = _NonMaxSuppression.apply(boxes, per_class, keep_max, nms_thresh, INVALID_SCORE / 2)  # [K, 3]
    image, index = selected[:, 0], selected[:, 2]
    kept = torch.full_like(scores, INVALID_SCORE).index_put((image, index), scores[image, index])
    top_scores, top_idx = kept.topk(keep_max, dim=1)  # [B, D]
    valid = top_scores >= 0
    out_boxes = torch.gather(boxes, 1, top_idx[..., None].expand(-1, -1, 4)) * valid[..., None]
    out_labels = torch.where(valid, torch.gather(labels, 1, top_idx), -1)
    return out_boxes, torch.where(valid, top_scores, 0.0), out_labels, valid.sum(1)


class ExportModule(nn.Module):
    """(images [B, 3, H, W] in [0, 1], image_sizes [B, 2]) -> detections, for ``torch.onnx.export``."""

    def __init__(self, model: nn.Module, nms: bool = True) -> None:
        super().__init__()
        self.model = model
        self.nms = nms
        cfg: FCOSConfig = model.config
        self.register_buffer("mean", torch.tensor(cfg.input.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.input.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        cfg: FCOSConfig = self.model.config
        height, width = images.shape[-2], images.shape[-1]
        rows = torch.arange(height, device=images.device, dtype=torch.float32)
        cols = torch.arange(width, device=images.device, dtype=torch.float32)
        inside = (rows[None, :, None] < image_sizes[:, 0, None, None]) & (cols[None, None, :] < image_sizes[:, 1, None, None])
        x = torch.where(inside[:, None], (images - self.mean) / self.std, 0.0)  # InputTransform: zero padding
        features = self.model.fpn(self.model.backbone(x))
        out = self.model.head(features)
        xy, sizes = [], []
        for feature, stride in zip(features, self.model.strides, strict=True):
            h, w = feature.shape[-2], feature.shape[-1]
            step_y, step_x = (height // h, width // w) if cfg.points.step_from_shape else (stride, stride)
            offset = cfg.points.offset * stride
            xy.append(grid_points(h, w, step_y, step_x, offset, offset, images.device))
            sizes.append(h * w)
        decoded = decode_dense(
            out.cls_logits, out.box_ltrb, out.centerness, torch.cat(xy), sizes, image_sizes, cfg.num_classes, cfg.decode
        )
        if self.nms:
            keep_max = min(cfg.decode.max_detections, len(sizes) * cfg.decode.topk_per_level)
            return nms_dense(*decoded, cfg.num_classes, keep_max, cfg.decode.nms_thresh)
        boxes, scores, labels = decoded
        valid = labels >= 0
        return boxes * valid[..., None], torch.where(valid, scores, 0.0), labels


def _metadata(model: nn.Module, state: dict[str, Any], img_size, dynamic: bool, nms: bool, opset: int) -> dict[str, str]:
    cfg: FCOSConfig = model.config
    full = cfg.to_dict()
    # The inference-relevant part, strict JSON (no infinities), readable by FCOSConfig.from_dict.
    config = {key: full[key] for key in ("num_classes", "preset", "input", "points", "decode")}
    preprocessing = {
        "inputs": {"images": "float32 [B, 3, H, W] RGB in [0, 1]", "image_sizes": "float32 [B, 2] (h, w) before padding"},
        "resize": "fcos.model.transform.resized_shape(h, w, min_size, max_size); bilinear, align_corners=False"
        + ("" if img_size is None else "; scaled down further to fit img_size"),
        "min_size": cfg.input.min_size,
        "max_size": cfg.input.max_size,
        "pad": "bottom/right to a multiple of size_divisible" if img_size is None else "bottom/right to img_size",
        "size_divisible": cfg.input.size_divisible,
        "img_size": None if img_size is None else list(img_size),
        "normalize": "in graph: (x - mean) / std, zero outside image_sizes",
        "mean": list(cfg.input.mean),
        "std": list(cfg.input.std),
        "dynamic_batch": dynamic,
        "boxes": "xyxy in resized-image pixels; multiply by original / resized size (fcos.model.transform.scale_boxes)",
    }
    return {
        "format": f"{FORMAT}/{VERSION}",
        "class_names": json.dumps(list(state["class_names"])),
        "category_ids": json.dumps([int(i) for i in state["category_ids"]]),
        "config": json.dumps(config, allow_nan=False),
        "backbone": json.dumps(cfg.backbone.name),
        "preprocessing": json.dumps(preprocessing),
        "nms": json.dumps(nms),
        "opset": str(opset),
    }


def _set_shape(value_info: Any, dims: Sequence[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


def read_metadata(model_or_path: Any) -> dict[str, Any]:
    """``metadata_props`` of an exported model (an ``onnx.ModelProto``, a path or an onnxruntime
    session's ``custom_metadata_map``), JSON values decoded."""
    if isinstance(model_or_path, dict):
        props = model_or_path
    else:
        import onnx

        proto = model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(str(model_or_path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
    if not str(props.get("format", "")).startswith(FORMAT):
        raise ValueError("not an fcos ONNX export (metadata 'format' missing); export it with `fcos export`")
    return {key: (value if key in ("format", "opset") else json.loads(value)) for key, value in props.items()}


def export_onnx(
    weights: str | Path,
    out: str | Path,
    img_size: Sequence[int] | None = None,
    dynamic: bool = False,
    nms: bool = True,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a checkpoint to ONNX (see the module docstring for the input/output contract).

    Args:
        weights: an fcos ``.pt`` checkpoint or a registered pretrained name (:mod:`fcos.pretrained`).
        out: the ``.onnx`` file to write (atomically).
        img_size: fixed (H, W) input, multiples of ``size_divisible``; None: H and W dynamic (default,
            reproduces the PyTorch model's padding exactly).
        dynamic: make the batch axis dynamic (default: batch 1).
        nms: put class-aware NMS and the final top-``max_detections`` in the graph.
        opset: ONNX opset (>= 11).
    """
    import onnx

    from fcos.pretrained import load_weights

    model, state = load_weights(weights)
    cfg: FCOSConfig = model.config
    div, min_side = cfg.input.size_divisible, max(model.strides)
    if img_size is not None:
        img_size = (int(img_size[0]), int(img_size[1]))
        if img_size[0] % div or img_size[1] % div or min(img_size) < min_side:
            raise ValueError(f"img_size {img_size} must be multiples of {div} and at least {min_side}")
    trace_hw = img_size or (max(min_side, 2 * div * 4), max(min_side, 2 * div * 5))
    batch = 2 if dynamic else 1
    images = torch.rand(batch, 3, *trace_hw)
    image_sizes = torch.tensor([[trace_hw[0] - 7.0, trace_hw[1] - 20.0]] * batch)
    spatial = {} if img_size is not None else {2: "height", 3: "width"}
    batch_axis = {0: "batch"} if dynamic else {}
    outputs = ["boxes", "scores", "labels", "num_detections"] if nms else ["boxes", "scores", "labels"]
    dynamic_axes = {"images": {**batch_axis, **spatial}, "image_sizes": dict(batch_axis)}
    dynamic_axes.update({name: dict(batch_axis) for name in outputs})

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # GroupNorm's input check (`size == 1`) reads a traced size; it validates, it does not shape the graph.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.functional")
            # Chosen on purpose: it maps the NMS below to NonMaxSuppression without onnxscript.
            # (torch deprecates that exporter; the dynamo one needs onnxscript and a custom NMS translation.)
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            # Advanced indexing here only ever uses non-negative indices, the case the exporter supports.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(
                ExportModule(model, nms=nms).eval(),
                (images, image_sizes),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=["images", "image_sizes"],
                output_names=outputs,
                dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
                do_constant_folding=True,
            )
        proto = onnx.load(tmp)
        # Output shapes are static (fixed top-k) but not inferable through NonMaxSuppression: state them.
        candidates = len(STRIDES) * cfg.decode.topk_per_level
        rows = min(cfg.decode.max_detections, candidates) if nms else candidates
        shapes = {"boxes": [rows, 4], "scores": [rows], "labels": [rows], "num_detections": []}
        for output in proto.graph.output:
            _set_shape(output, ["batch" if dynamic else 1, *shapes[output.name]])
        proto.producer_name = "fcos"
        proto.doc_string = "FCOS detector with decoding" + (" and NMS" if nms else "") + "; see metadata 'preprocessing'"
        for key, value in _metadata(model, state, img_size, dynamic, nms, opset).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
