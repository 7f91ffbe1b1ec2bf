"""Running an exported file: :func:`load_exported` opens it with its format's runtime
(:mod:`fcos.export.formats`: ``.onnx`` ONNX Runtime, ``.xml`` OpenVINO), checks that it is an fcos export
whose metadata matches its graph (:mod:`fcos.export.contract`), and returns an :class:`ExportedModel`:
the metadata, the config and one ``run(images, image_sizes)`` for every runtime.
The host side around it (resize, pad, boxes back to the original image) is :mod:`fcos.export.host`.

Runtime settings, chosen by profiling (docs/performance.md, "Deployed models"): ONNX Runtime with all
graph optimisations (its NCHWc convolution layout included), ``intra_op_num_threads`` threads and
sequential execution; OpenVINO with the LATENCY hint, ``INFERENCE_NUM_THREADS`` threads and
``INFERENCE_PRECISION_HINT=f32`` (on CPUs with AMX or AVX512-BF16, OpenVINO would otherwise run an fp32
model in bfloat16: faster, but not the fp32 model; the int8 layers of an int8 model stay int8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcos.config import FCOSConfig
from fcos.export.contract import ExportedModelError, check_metadata
from fcos.export.formats import FORMATS, format_for, format_named
from fcos.utils.flags import SettingError

__all__ = ["ExportedModel", "ExportedModelError", "backend_for", "load_exported"]


def backend_for(path: str | Path) -> str | None:
    """The runtime that runs ``path`` by its suffix (``.onnx``: onnxruntime, ``.xml``: openvino), else None."""
    fmt = format_for(path)
    return None if fmt is None else fmt.runtime


@dataclass
class ExportedModel:
    """An exported detector ready to run: ``run`` takes :func:`fcos.export.host.prepare_inputs`' arrays and
    returns the graph's outputs (numpy, in the order of :data:`fcos.export.contract.OUTPUTS`)."""

    path: Path
    backend: str
    metadata: dict[str, Any]
    config: FCOSConfig
    _run: Any = field(repr=False)

    @property
    def nms_in_graph(self) -> bool:
        return bool(self.metadata["nms"])

    @property
    def img_size(self) -> list[int] | None:
        return self.metadata["preprocessing"]["img_size"]

    @property
    def precision(self) -> str:
        return str(self.metadata.get("precision", "fp32"))

    def run(self, images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
        return self._run(images, image_sizes)


def load_exported(path: str | Path, backend: str | None = None, device: str = "cpu", num_threads: int = 1) -> ExportedModel:
    """Open an exported model with ``backend`` (default: by suffix) on ``device`` with ``num_threads`` threads.

    Raises:
        FileNotFoundError: no such file.
        ExportedModelError: the file cannot be read, is not an fcos export, or its metadata and graph disagree.
        MissingExtraError: the runtime is not installed (the message names the extra).
    """
    path = Path(path)
    fmt = format_named(backend, runtime=True) if backend else format_for(path)
    if fmt is None:
        suffixes = ", ".join(f"{f.suffix} ({f.runtime})" for f in FORMATS.values())
        raise SettingError(f"no runtime for {path}: exported models are {suffixes}")
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    metadata, inputs, outputs, run = fmt.load(path, device, num_threads)
    try:
        config = FCOSConfig.from_dict(metadata["config"])
        check_metadata(metadata, config, inputs, outputs)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportedModelError(f"cannot use exported model {path}: {exc}") from None
    return ExportedModel(path, fmt.runtime, metadata, config, run)

