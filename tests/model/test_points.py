import pytest
import torch

from fcos.config import STRIDES, PointsConfig
from fcos.model.points import make_points

SHAPES = [(100, 136), (50, 68), (25, 34), (13, 17), (7, 9)]  # padded 800 x 1088


def test_official_points_sit_at_cell_centres():
    pts = make_points(SHAPES, STRIDES, (800, 1088), PointsConfig())
    assert pts.num_points == sum(h * w for h, w in SHAPES) == 18134
    assert pts.xy[0].tolist() == [4.0, 4.0] and pts.xy[1].tolist() == [12.0, 4.0]
    assert pts.xy[136].tolist() == [4.0, 12.0]  # row-major: the second row starts after 136 points
    p6 = pts.levels[3]
    assert pts.xy[p6.start].tolist() == [32.0, 32.0] and pts.xy[p6.start + p6.width].tolist() == [32.0, 96.0]
    assert pts.strides[p6.start].item() == 64 and pts.level_sizes == [h * w for h, w in SHAPES]


def test_torchvision_points_use_padded_size_over_grid_size():
    pts = make_points(SHAPES, STRIDES, (800, 1088), PointsConfig(offset=0.0, step_from_shape=True))
    p6, p7 = pts.levels[3], pts.levels[4]
    # torchvision's AnchorGenerator: 800 // 13 = 61 rows apart, 1088 // 17 = 64 columns apart
    assert (p6.step_y, p6.step_x) == (61.0, 64.0) and (p7.step_y, p7.step_x) == (114.0, 120.0)
    assert pts.xy[p6.start + p6.width].tolist() == [0.0, 61.0]
    assert pts.xy[0].tolist() == [0.0, 0.0] and pts.strides[p6.start].item() == 64


@pytest.mark.parametrize("device", ["cpu", "meta", *(["cuda"] if torch.cuda.is_available() else [])])
def test_points_follow_device_and_dtype(device):
    pts = make_points([(2, 3)], [8], (16, 24), PointsConfig(), device=device)
    assert pts.xy.device.type == pts.strides.device.type == device
    assert pts.xy.dtype == pts.strides.dtype == torch.float32 and pts.xy.shape == (6, 2) and pts.strides.shape == (6,)
