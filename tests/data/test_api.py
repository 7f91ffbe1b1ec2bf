import fcos.data


def test_public_api_is_complete():
    assert sorted(fcos.data.__all__) == fcos.data.__all__
    missing = [name for name in fcos.data.__all__ if not hasattr(fcos.data, name)]
    assert not missing
    for name in (
        "load_annotations",
        "DetectionDataset",
        "build_loader",
        "generate_shapes",
        "to_coco",
        "DatasetError",
    ):
        assert name in fcos.data.__all__
