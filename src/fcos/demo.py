"""`make demo`: the main job on built-in data (placeholder until the training pipeline lands)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from fcos.config import official
from fcos.model.detector import FCOS


def run_demo(out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = FCOS(official(num_classes=3, backbone="resnet18", **{"input.min_size": 256, "input.max_size": 256}))
    model.train()
    image = torch.rand(3, 256, 256) * 0.2
    image[:, 64:192, 80:200] = torch.tensor([0.9, 0.2, 0.2])[:, None, None]
    target = {"boxes": torch.tensor([[80.0, 64.0, 200.0, 192.0]]), "labels": torch.tensor([0])}
    with torch.no_grad():
        losses = model([image], [target])
    print("losses:", {k: round(v.item(), 4) for k, v in losses.items()})
    model.eval()
    with torch.inference_mode():
        (det,) = model([image])
    print(f"{len(det['boxes'])} detections (untrained model)")
    canvas = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype("uint8"))
    draw = ImageDraw.Draw(canvas)
    for box in det["boxes"][:5].tolist():
        draw.rectangle(box, outline=(0, 255, 0))
    canvas.save(out / "detections.png")
    print(f"wrote {out / 'detections.png'}")
