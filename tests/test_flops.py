"""bench.flops: the FLOP count of one convolution equals the hand count; MFU arithmetic; the peak table."""

import torch
import torch.nn.functional as F

from bench.flops import count_flops, mfu, peak_tflops


def test_flop_count_of_one_convolution_is_the_hand_count():
    x, w = torch.rand(2, 16, 20, 24), torch.rand(32, 16, 3, 3)
    # 2 (multiply + add) x N x K x H x W x C x 3 x 3, stride 1, padding 1: output 20x24.
    assert count_flops(lambda: F.conv2d(x, w, padding=1)) == 2 * 2 * 32 * 20 * 24 * 16 * 9
    a, b = torch.rand(64, 128), torch.rand(128, 256)
    assert count_flops(lambda: a @ b) == 2 * 64 * 128 * 256


def test_mfu_against_the_peak_table():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "fp16") == 756.0
    assert peak_tflops("NVIDIA H200", "tf32") == 494.5
    assert peak_tflops("Tesla T4", "bf16") is None and peak_tflops("Some CPU", "fp32") is None
    assert abs(mfu(989e12 * 0.05 * 0.05, 50.0, 989.0) - 0.05) < 1e-12  # 5% of 50 ms of the peak, in 50 ms
    assert mfu(1e12, 10.0, None) is None
