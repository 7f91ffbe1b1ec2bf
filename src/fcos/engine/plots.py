"""Run-folder pictures: loss_curve.png (from metrics.jsonl) and val_predictions.png (tiles sized so that
small and crowded objects stay visible)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fcos.data import DetectionData, DetectionDataset
from fcos.engine.distributed import evaluating
from fcos.writes import atomic_write, save_image

__all__ = ["plan_tiles", "plot_loss_curve", "save_val_predictions", "tile_side"]


def plot_loss_curve(metrics_file: Path, out: Path) -> Path | None:
    """Training losses against updates, validation AP/AP50 on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("event") == "train"]
    val = [r for r in records if r.get("event") == "val"]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps = [r["iteration"] for r in train]
    for key, label in (("loss", "total"), ("classification", "focal"), ("bbox_regression", "box IoU"), ("bbox_ctrness", "centerness")):
        ax.plot(steps, [r[key] for r in train], label=label, linewidth=2 if key == "loss" else 1)
    ax.set_xlabel("update")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if val:
        ax2 = ax.twinx()
        for key, style in (("AP", "o-"), ("AP50", "s--")):
            ax2.plot([r["iteration"] for r in val], [r[key] for r in val], style, color="black" if key == "AP" else "gray", label=f"val {key}")
        ax2.set_ylabel("COCO AP")
        ax2.set_ylim(0, 1)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    ax.set_title("fcos training")
    fig.tight_layout()
    try:
        with atomic_write(out) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
    return out


def tile_side(width: int, height: int, boxes: np.ndarray, *, base: int = 320, largest: int = 1024,
              min_box: float = 32.0, box_room: float = 64.0) -> int:
    """The longer side, in px, of an image's tile in ``val_predictions.png``: ``base``, larger when the
    image's objects would be too small or too crowded to see at that size: the median box's shorter
    side reaches ``min_box`` px, and each box has ``box_room`` x ``box_room`` px of the tile on average.
    At most ``largest`` and never above the image's own size (no upscaling). ``boxes``: [N, 4] xyxy."""
    longest = max(width, height)
    side = float(base)
    if len(boxes):
        shorter = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        side = max(side, min_box * longest / max(float(np.median(shorter)), 1.0))
        side = max(side, box_room * np.sqrt(len(boxes) * longest / max(min(width, height), 1)))
    return int(min(side, largest, longest))


def plan_tiles(data: DetectionData, count: int = 16, tile_size: int = 320, pixel_budget: int = 4_000_000) -> list[tuple[int, float]]:
    """Which of the first ``count`` images go into ``val_predictions.png`` and at what scale: each on a
    tile of :func:`tile_side` px, added while the tiles' pixels fit in ``pixel_budget`` (at least one).
    Returns ``[(index, scale)]``; sizes from the records (the declared sizes of the images)."""
    plan: list[tuple[int, float]] = []
    used = 0
    for index, record in enumerate(data.records[:max(count, 0)]):
        side = tile_side(record.width, record.height, record.boxes, base=tile_size)
        scale = min(1.0, side / max(record.width, record.height))
        pixels = round(record.width * scale) * round(record.height * scale)
        if plan and used + pixels > pixel_budget:
            break
        plan.append((index, scale))
        used += pixels
    return plan


@torch.no_grad()
def save_val_predictions(
    model: nn.Module,
    data: DetectionData,
    out: Path,
    count: int = 16,
    device: torch.device | str = "cpu",
    conf: float = 0.3,
    tile_size: int = 320,
    pixel_budget: int = 4_000_000,
) -> Path | None:
    """Validation images with ground truth dashed and predictions above ``conf``, as :func:`plan_tiles`
    chooses them: fewer, larger tiles for large or dense images. Tiles are packed in rows about four
    base tiles wide."""
    from PIL import Image

    from fcos.viz import draw_detections, image_rows

    if count <= 0 or len(data) == 0:
        return None
    dataset = DetectionDataset(data)
    tiles: list[Image.Image] = []
    with evaluating(model) as base:
        for index, scale in plan_tiles(data, count, tile_size, pixel_budget):
            image, target = dataset[index]
            det = base([image.to(device)])[0]
            pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
            pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
            keep = det["scores"] >= conf
            tiles.append(draw_detections(
                pil, det["boxes"][keep].cpu() * scale, det["labels"][keep].cpu(), det["scores"][keep].cpu(),
                data.class_names, gt_boxes=target["boxes"] * scale, gt_labels=target["labels"],
            ))
    return save_image(image_rows(tiles, max_width=4 * tile_size + 5 * 4), out)
