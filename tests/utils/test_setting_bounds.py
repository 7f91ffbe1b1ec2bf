"""fcos.utils.flags: a config field's valid interval (``Bound``) stated once, checked by ``check_bounds``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fcos.utils.flags import (
    AT_LEAST_1,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Bound,
    SettingError,
    check_bounds,
    option,
)


@pytest.mark.parametrize(("bound", "inside", "outside", "text"), [
    (POSITIVE, [1e-9, 5], [0, -1], "> 0"),
    (NON_NEGATIVE, [0, 3], [-1e-9], "at least 0"),
    (AT_LEAST_1, [1, 2], [0, 0.5], "at least 1"),
    (FRACTION, [0, 0.5, 1], [-0.1, 1.01], "in [0, 1]"),
    (Bound(0, 1, high_open=True), [0, 0.99], [1, -0.1], "in [0, 1)"),
    (Bound(0, 1, low_open=True, high_open=True), [0.5], [0, 1], "in (0, 1)"),
    (Bound(high=3), [-10, 3], [3.5], "at most 3"),
    (Bound(high=3, high_open=True), [2.9], [3], "< 3"),
])
def test_bound_membership_and_text(bound, inside, outside, text):
    assert all(v in bound for v in inside) and not any(v in bound for v in outside)
    assert str(bound) == text
    with pytest.raises(SettingError, match=rf"^x must be {text.replace('(', '.').replace('[', '.').replace(')', '.')}"):
        bound.check(outside[0], "x")


def test_check_bounds_names_the_first_bad_field_and_lets_none_and_tuples_through():
    @dataclass(frozen=True)
    class Settings:
        rate: float | None = option(None, "", group="g", bound=POSITIVE)
        points: tuple[float, ...] = option((0.2, 0.8), "", group="g", bound=FRACTION)
        name: str = option("a", "", group="g")

        def __post_init__(self) -> None:
            check_bounds(self)

    Settings()  # None and in-range tuples pass
    assert Settings(rate=2.0).rate == 2.0
    with pytest.raises(SettingError, match=r"^Settings.rate must be > 0, got -1$"):
        Settings(rate=-1)
    with pytest.raises(SettingError, match=r"^Settings.points must be in \[0, 1\], got 60000$"):
        Settings(points=(0.5, 60000))  # step points given as update counts, not fractions
    assert issubclass(SettingError, ValueError)  # callers catching ValueError still do


def test_library_configs_check_their_ranges():
    from fcos.engine.train_config import TrainConfig, cpu_from_scratch
    from fcos.model.options import ModelOptions
    from fcos.predict.options import InferenceOptions
    from fcos.track import LinkConfig, TrackerConfig

    for make, message in [
        (lambda: TrainConfig(batch_size=0), "TrainConfig.batch_size must be at least 1, got 0"),
        (lambda: cpu_from_scratch(ema=1.0), "TrainConfig.ema must be in (0, 1), got 1"),
        (lambda: TrainConfig(tile=16), "TrainConfig.tile must be at least 32, got 16"),
        (lambda: ModelOptions(fpn_channels=1), "ModelOptions.fpn_channels must be at least 2, got 1"),
        (lambda: InferenceOptions(slice_overlap=1.0), "InferenceOptions.slice_overlap must be in [0, 0.9], got 1"),
        (lambda: TrackerConfig(track_buffer=-1), "TrackerConfig.track_buffer must be at least 0, got -1"),
        (lambda: LinkConfig(link_distance=0), "LinkConfig.link_distance must be > 0, got 0"),
    ]:
        with pytest.raises(SettingError) as info:
            make()
        assert str(info.value) == message
    assert TrainConfig(lr=0.0).lr == 0.0  # lr 0 is a valid (frozen) run: the DDP patience test trains with it
