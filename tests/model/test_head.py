import math

import pytest
import torch

from fcos.config import STRIDES, FPNConfig, HeadConfig
from fcos.model.fpn import FPN
from fcos.model.head import FCOSHead


def features(channels=64):
    return [torch.rand(2, channels, h, w) for h, w in [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]]


def test_head_shapes_prior_and_scales():
    head = FCOSHead(64, 5, HeadConfig(num_convs=2), STRIDES)
    out = head(features())
    P = 8 * 12 + 4 * 6 + 2 * 3 + 2 + 1
    assert out.cls_logits.shape == (2, P, 5) and out.box_ltrb.shape == (2, P, 4) and out.centerness.shape == (2, P)
    assert out.level_shapes == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    # the classification prior: sigmoid(bias) = 0.01
    assert torch.sigmoid(head.cls_logits.bias).tolist() == pytest.approx([0.01] * 5)
    assert (out.box_ltrb >= 0).all() and (out.box_ltrb > 0).any()
    # distances are relu(scale * x) * stride: doubling P4's scale doubles P4's distances exactly (a power
    # of two) and leaves every other level as it was
    feats = features()
    base = head(feats).box_ltrb
    with torch.no_grad():
        head.scales[1].scale.fill_(2.0)
    scaled = head(feats).box_ltrb
    p4 = slice(8 * 12, 8 * 12 + 4 * 6)
    assert torch.equal(scaled[:, p4], 2 * base[:, p4]) and (base[:, p4] > 0).any()
    assert torch.equal(scaled[:, : p4.start], base[:, : p4.start]) and torch.equal(scaled[:, p4.stop :], base[:, p4.stop :])


def test_level_scale_and_stride_applied():
    torch.manual_seed(0)
    head = FCOSHead(64, 3, HeadConfig(num_convs=1), STRIDES)
    feats = features()
    base = head(feats).box_ltrb
    with torch.no_grad():
        head.scales[0].scale.fill_(2.0)
    scaled = head(feats).box_ltrb
    n3 = 8 * 12
    torch.testing.assert_close(scaled[:, :n3], base[:, :n3] * 2)
    torch.testing.assert_close(scaled[:, n3:], base[:, n3:])


def test_exp_regression_and_centerness_branch():
    head = FCOSHead(64, 3, HeadConfig(num_convs=1, norm_reg_targets=False, centerness_on_reg=False, learnable_scales=False), STRIDES)
    assert head.scales is None
    out = head(features())
    assert (out.box_ltrb > 0).all()
    # exp of a near-zero init is ~1 pixel regardless of level
    assert out.box_ltrb.mean().item() == pytest.approx(1.0, abs=0.2)


def test_fpn_levels_and_p6_source():
    fpn = FPN((128, 256, 512), FPNConfig(channels=64))
    c = [torch.rand(1, 128, 16, 20), torch.rand(1, 256, 8, 10), torch.rand(1, 512, 4, 5)]
    p = fpn(c)
    assert [tuple(x.shape[-2:]) for x in p] == [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    assert all(x.shape[1] == 64 for x in p)
    fpn_c5 = FPN((128, 256, 512), FPNConfig(channels=64, extra_from="c5"))
    assert fpn_c5.p6.in_channels == 512 and fpn.p6.in_channels == 64
    assert math.isfinite(sum(x.sum().item() for x in fpn_c5(c)))
