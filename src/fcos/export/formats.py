"""The deployment formats, one table that everything reads: ``fcos export --format`` and its output
suffix, the runtime that runs a file (``--backend``, chosen by suffix), the files beside it, the devices
that runtime can use, the precisions ``fcos benchmark`` measures, and the optional package to install.

Adding a format (TensorRT, CoreML) is one module ``export/<format>.py`` with its writer and its loader,
and one :class:`ExportFormat` line here; export, :class:`~fcos.predict.Predictor` (predict, eval,
serve), the benchmark and the CLI read the rest from the table (``tests/export/test_formats.py``
registers a format and checks every place).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fcos.export.contract import Loaded
from fcos.export.onnx import export_onnx, load_onnxruntime, onnxruntime_devices
from fcos.export.openvino import export_openvino, load_openvino
from fcos.utils.flags import SettingError

__all__ = ["FORMATS", "PRECISIONS", "ExportFormat", "format_for", "format_named", "runtimes"]

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ExportFormat:
    """One deployment format.

    ``write(weights, out, *, img_size, dynamic, nms, opset, int8, conv3x3) -> path`` writes the file
    (:func:`fcos.export.export`'s arguments); ``load(path, device, num_threads) -> Loaded`` opens it
    for its runtime (:mod:`fcos.export.contract`); ``devices()`` lists the device kinds that runtime
    can use here. ``converts`` names a format whose files ``write`` also takes as they are (OpenVINO
    converts an ONNX export: one graph, one int8 calibration for both).
    """

    name: str  # --format value, benchmark row prefix
    suffix: str  # the file's suffix; --weights picks the runtime by it
    runtime: str  # --backend value
    extra: str  # pip install 'fcos[<extra>]' installs what writing and running it need
    write: Callable[..., Path]
    load: Callable[[Path, str, int], Loaded]
    devices: Callable[[], tuple[str, ...]]
    sidecars: tuple[str, ...] = ()  # suffixes of the files written beside it (OpenVINO's weights: .bin)
    precisions: tuple[str, ...] = PRECISIONS
    converts: str | None = None

    def files(self, path: str | Path) -> list[Path]:
        """The file and the files beside it that make up one exported model."""
        path = Path(path)
        return [path, *(path.with_suffix(s) for s in self.sidecars)]


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", ".onnx", "onnxruntime", "onnx", export_onnx, load_onnxruntime, onnxruntime_devices),
        ExportFormat("openvino", ".xml", "openvino", "openvino", export_openvino, load_openvino, lambda: ("cpu",),
                     sidecars=(".bin",), converts="onnx"),
    )
}


def runtimes() -> tuple[str, ...]:
    """The runtimes of the formats (``--backend`` choices besides ``torch``)."""
    return tuple(f.runtime for f in FORMATS.values())


def format_for(path: str | Path) -> ExportFormat | None:
    """The format of an exported file by its suffix (any case), or None (a checkpoint or a name)."""
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS.values() if f.suffix == suffix), None)


def format_named(name: str, *, runtime: bool = False) -> ExportFormat:
    """The format called ``name`` (or, with ``runtime``, run by the runtime ``name``); ValueError naming
    the choices otherwise."""
    for f in FORMATS.values():
        if (f.runtime if runtime else f.name) == name:
            return f
    choices = runtimes() if runtime else tuple(FORMATS)
    raise SettingError(f"unknown {'runtime' if runtime else 'export format'} {name!r}; choose from {', '.join(choices)}")
