"""What every exported file holds, whatever its format: the graph's inputs and outputs, the metadata keys
that travel with it, and the one error for a file that cannot be run (:class:`ExportedModelError`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fcos.config import FCOSConfig

__all__ = ["INPUTS", "OUTPUTS", "ExportedModelError", "Loaded", "check_metadata"]

INPUTS = ("images", "image_sizes")
# nms in the graph -> its outputs, in this order
OUTPUTS = {True: ("boxes", "scores", "labels", "num_detections"), False: ("boxes", "scores", "labels")}

# What a format's loader returns: (metadata, input names, output names, run(images, image_sizes) -> outputs).
Loaded = tuple[dict[str, Any], list[str], list[str], Callable[[np.ndarray, np.ndarray], list[np.ndarray]]]


class ExportedModelError(ValueError):
    """An exported file that cannot be run: unreadable, corrupt, not an fcos export, or whose metadata
    does not match its graph. The message names the file."""


def check_metadata(meta: dict[str, Any], config: FCOSConfig, inputs: list[str], outputs: list[str]) -> None:
    """The metadata agrees with itself and with the graph's inputs and outputs (ValueError otherwise)."""
    for key in ("class_names", "category_ids", "preprocessing", "nms"):
        if key not in meta:
            raise ValueError(f"its metadata has no {key!r}")
    if not len(meta["class_names"]) == len(meta["category_ids"]) == config.num_classes:
        raise ValueError(f"its metadata names {len(meta['class_names'])} classes and {len(meta['category_ids'])} "
                         f"category ids for a {config.num_classes}-class model")
    if sorted(inputs) != sorted(INPUTS):
        raise ValueError(f"the graph's inputs are {inputs}, expected {list(INPUTS)}")
    expected = OUTPUTS[bool(meta["nms"])]
    if list(outputs) != list(expected):
        raise ValueError(f"the graph's outputs are {outputs}, expected {list(expected)} (metadata nms={meta['nms']})")
