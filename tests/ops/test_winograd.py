"""Winograd F(4x4, 3x3): the same convolution as F.conv2d, values and all three gradients."""

import pytest
import torch
import torch.nn.functional as F

from fcos.ops import winograd


def _conv(x, w, b):
    return winograd.conv3x3(x, winograd.transform_filter(w), b)


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 1, 1), (1, 2, 4, 4), (2, 4, 8, 13), (1, 6, 5, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("one_tile_row_per_band", [False, True])
def test_equals_direct_convolution_in_float64(shape, channels_last, with_bias, one_tile_row_per_band, monkeypatch):
    if one_tile_row_per_band:
        monkeypatch.setattr(winograd, "_BAND_BYTES", 1)
    n, c, h, w = shape
    x = torch.randn(shape, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = torch.randn(7, c, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, requires_grad=True) if with_bias else None
    ours, ref = _conv(x, weight, bias), F.conv2d(x, weight, bias, padding=1)
    assert ours.shape == ref.shape == (n, 7, h, w)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-11)
    upstream = torch.randn_like(ref)
    inputs = (x, weight) + ((bias,) if with_bias else ())
    for g_ours, g_ref in zip(torch.autograd.grad((ours * upstream).sum(), inputs),
                             torch.autograd.grad((ref * upstream).sum(), inputs), strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-10)


def test_gradcheck():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_conv, (x, w, b))


def test_float32_error_is_of_the_order_of_direct_convolution():
    x = torch.randn(2, 64, 20, 24).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(64, 64, 3, 3) * 0.05, torch.randn(64)
    truth = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    scale = float(truth.abs().max())
    ours = float((_conv(x, w, b).double() - truth).abs().max()) / scale
    direct = float((F.conv2d(x, w, b, padding=1).double() - truth).abs().max()) / scale
    assert ours < 2e-5 and ours < 20 * max(direct, 1e-7)


def test_gradient_of_one_input_only():
    x = torch.randn(1, 4, 9, 6, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    (gw,) = torch.autograd.grad(_conv(x, w, None).square().sum(), (w,))
    (rw,) = torch.autograd.grad(F.conv2d(x, w, padding=1).square().sum(), (w,))
    torch.testing.assert_close(gw, rw)
    x.requires_grad_()
    w.requires_grad_(False)
    (gx,) = torch.autograd.grad(_conv(x, w, None).square().sum(), (x,))
    (rx,) = torch.autograd.grad(F.conv2d(x, w, padding=1).square().sum(), (x,))
    torch.testing.assert_close(gx, rx)


def test_supported_only_where_precise_and_not_exporting():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    assert winograd.supported(x, w)
    assert not winograd.supported(x.bfloat16(), w.bfloat16())
    assert not winograd.supported(x, w.double())
    assert not winograd.supported(x, torch.randn(4, 4, 5, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not winograd.supported(x, w)


def test_levels_sharing_a_filter_and_a_retained_graph():
    """One transformed filter used by several inputs; backward twice (retain_graph) stays exact."""
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    xs = [torch.randn(1, 2, s, s, dtype=torch.float64, requires_grad=True) for s in (6, 3)]
    filt = winograd.transform_filter(w)
    loss = sum((winograd.conv3x3(x, filt) ** 2).sum() for x in xs)
    ref = sum((F.conv2d(x, w, padding=1) ** 2).sum() for x in xs)
    expected = torch.autograd.grad(ref, (w, *xs))
    for _ in range(2):
        for got, want in zip(torch.autograd.grad(loss, (w, *xs), retain_graph=True), expected, strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 1, 1), (1, 6, 5, 3), (2, 4, 8, 12), (1, 2, 13, 4)])
def test_graph_form_equals_direct_convolution_in_float64(shape):
    # The operators an exported graph holds (fcos.ops.winograd.conv3x3_graph), run eagerly.
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    weight, bias = torch.randn(7, shape[1], 3, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    ours = winograd.conv3x3_graph(x, winograd.graph_filter(weight), bias)
    torch.testing.assert_close(ours, F.conv2d(x, weight, bias, padding=1), rtol=0, atol=1e-11)
    torch.testing.assert_close(winograd.conv3x3_graph(x, winograd.graph_filter(weight)), F.conv2d(x, weight, padding=1),
                               rtol=0, atol=1e-11)


def test_graph_matrices_are_the_transforms_of_the_eager_path():
    # The graph's B^T and A^T (dense) are what _bt and _at compute (sparse): one algorithm, two spellings.
    basis = list(torch.eye(6, dtype=torch.float64))
    rows = list(torch.empty(6, 6, dtype=torch.float64))
    winograd._bt(basis, rows)
    assert torch.equal(torch.stack(rows), winograd._BT)
    rows = list(torch.empty(4, 6, dtype=torch.float64))
    winograd._at(basis, rows)
    assert torch.equal(torch.stack(rows), winograd._AT)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(winograd.graph_filter(w), winograd.transform_filter(w).u.transpose(1, 2))
