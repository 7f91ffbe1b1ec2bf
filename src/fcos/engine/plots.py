"""loss_curve.png: a run's training losses and validation AP against updates (from metrics.jsonl)."""

from __future__ import annotations

from pathlib import Path

from fcos.engine.run_log import RunLog
from fcos.utils.figures import pyplot, save_figure

__all__ = ["plot_loss_curve"]


def plot_loss_curve(log: RunLog, out: Path) -> Path | None:
    """Training losses against updates, validation AP/AP50 on a second axis (None: nothing logged yet)."""
    train = list(log.records("train"))
    val = list(log.records("val"))
    if not train:
        return None
    fig, ax = pyplot().subplots(figsize=(8, 4.5), dpi=100)
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
    save_figure(fig, out)
    return out
