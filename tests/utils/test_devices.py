"""--device auto and the one resolver behind every command's --device."""

from __future__ import annotations

import pytest
import torch

from fcos.cli import build_parser, main
from fcos.engine import launch
from fcos.engine.train_config import TRAIN_PRESETS
from fcos.utils.devices import DeviceError, describe_device, resolve_device


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=..., mps=...): pretend which accelerators exist."""

    def set_up(cuda: bool = False, mps: bool = False, count: int = 1) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_up


def test_auto_prefers_cuda_then_mps_then_cpu(machine):
    machine(cuda=True, mps=True)
    assert resolve_device("auto") == torch.device("cuda")
    machine(cuda=False, mps=True)
    assert resolve_device("auto") == torch.device("mps")
    machine()
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(" AUTO ")
    # a caller that cannot use a kind (onnxruntime without its CUDA provider) restricts auto's choice
    machine(cuda=True)
    assert resolve_device("auto", kinds=("cpu",)) == torch.device("cpu")


def test_explicit_devices_are_checked(machine):
    machine()
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="'cuda' is not available on this machine.*use --device auto"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    machine(cuda=True, count=2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match="usable here: cpu"):
        resolve_device("cuda", kinds=("cpu",))


def test_every_command_defaults_to_auto():
    parser = build_parser()
    for argv in (["eval", "--weights", "w.pt", "--data", "d"], ["predict", "--weights", "w.pt", "--source", "s"],
                 ["serve", "--weights", "w.pt"]):
        assert parser.parse_args(argv).device == "auto", argv[0]
    assert all(TRAIN_PRESETS[name]().device == "auto" for name in TRAIN_PRESETS)
    assert launch.init_from_env("auto") == resolve_device("auto")  # what the trainer runs on
    assert describe_device(torch.device("cpu")).startswith("cpu (")


def test_a_missing_device_is_one_line_not_a_traceback(machine, tmp_path, capsys):
    machine()
    code = main(["eval", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 1 and "error: device 'cuda' is not available" in err and "Traceback" not in err


def test_amp_means_bf16_on_ampere_gpus_and_native_bf16_cpus_fp16_on_older_gpus_fp32_elsewhere(monkeypatch):
    from fcos.engine.precision import Precision
    from fcos.utils import devices

    capability = {"value": (9, 0)}  # H100
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability["value"])
    assert devices.autocast_dtype(torch.device("cuda", 0), True)[0] == torch.bfloat16
    assert not Precision(torch.device("cuda", 0), True).scaler.is_enabled()  # bf16: no loss scaling
    capability["value"] = (7, 5)  # T4
    dtype, why = devices.autocast_dtype(torch.device("cuda", 0), True)
    assert dtype == torch.float16 and "GradScaler" in why
    assert devices.autocast_dtype(torch.device("cuda", 0), False)[0] is None
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.autocast_dtype(torch.device("cpu"), True)[0] == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    dtype, why = devices.autocast_dtype(torch.device("cpu"), True)
    assert dtype is None and "no native bf16" in why
    assert devices.autocast_dtype(torch.device("mps"), True)[0] == torch.bfloat16


def test_native_bf16_follows_the_cpu_instructions(monkeypatch):
    from fcos.utils import devices

    for avx512_bf16, amx, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: True)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert devices.cpu_has_native_bf16() is expected
