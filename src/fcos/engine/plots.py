"""Run-folder pictures: loss_curve.png (from metrics.jsonl) and val_predictions.png."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from fcos.data import DetectionData, DetectionDataset
from fcos.engine.distributed import evaluating
from fcos.writes import atomic_write, save_image

__all__ = ["plot_loss_curve", "save_val_predictions"]


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


@torch.no_grad()
def save_val_predictions(
    model: nn.Module,
    data: DetectionData,
    out: Path,
    count: int = 16,
    device: torch.device | str = "cpu",
    conf: float = 0.3,
    tile_size: int = 320,
) -> Path | None:
    """A grid of the first ``count`` validation images: ground truth and predictions above ``conf``."""
    from PIL import Image

    from fcos.viz import draw_detections, image_grid

    if count <= 0 or len(data) == 0:
        return None
    dataset = DetectionDataset(data)
    samples = [dataset[index] for index in range(min(count, len(dataset)))]
    with evaluating(model) as base:
        detections = [base([image.to(device)])[0] for image, _ in samples]
    tiles = []
    for (image, target), det in zip(samples, detections, strict=True):
        pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
        # Draw on a tile of at most tile_size px so large photos and their labels stay legible.
        scale = min(1.0, tile_size / max(pil.size))
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
        keep = det["scores"] >= conf
        tiles.append(draw_detections(
            pil, det["boxes"][keep].cpu() * scale, det["labels"][keep].cpu(), det["scores"][keep].cpu(), data.class_names,
            gt_boxes=target["boxes"] * scale, gt_labels=target["labels"],
        ))
    return save_image(image_grid(tiles, cols=4), out)
