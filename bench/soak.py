"""soak: resident memory over a long CPU training run, to catch leaks in the training loop.

Trains a tiny FCOS on the synthetic shapes dataset through the real :class:`Trainer` (data loading,
logging, periodic and epoch-end checkpoints) and samples the process's resident set (VmRSS) every
``every`` updates. "reference" is the RSS after warm-up (allocator pools, lazily loaded kernels and
the optimizer state exist by then); "ours" is the RSS at the end; the difference is the growth a leak
would show. Each sample follows ``gc.collect()`` and ``malloc_trim(0)``, so freed-but-cached heap
pages do not read as growth.
"""

from __future__ import annotations

import ctypes
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit, rss_mib
from fcos.data import generate_shapes
from fcos.engine.train_config import cpu_from_scratch
from fcos.engine.trainer import Trainer
from fcos.model.options import model_config_for

MODEL: dict[str, Any] = {"backbone": "resnet18", "img_size": 128, "fpn_channels": 16, "head_convs": 1}


def _settled_rss() -> float:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    value = rss_mib()
    if value is None:
        raise RuntimeError("soak needs /proc/self/status (Linux) to read the resident set size")
    return value


def run(quick: bool = False) -> list[dict[str, Any]]:
    iterations, warmup, every = (20, 5, 5) if quick else (2000, 50, 250)
    # batch 1 (~0.11 s per update on one core): 2,000 updates in about 4 minutes
    num_train = 16 if quick else 200  # 200 updates per epoch: an epoch-end checkpoint every 200 updates
    params = {**MODEL, "batch_size": 1, "iterations": iterations, "warmup": warmup, "train_images": num_train,
              "checkpoint_every": every, "workers": 0, "optimizer": "adamw"}
    with tempfile.TemporaryDirectory(prefix="fcos-soak-") as tmp:
        data = generate_shapes(Path(tmp) / "shapes", num_train=num_train, num_val=0, image_size=128)
        cfg = cpu_from_scratch(data=str(data), out=str(Path(tmp) / "run"), val_split=None, batch_size=1,
                               max_iters=iterations, workers=0, progress=False, log_every=every,
                               checkpoint_every=every, hflip=0.5, photometric=True)
        trainer = Trainer.from_config(model_config_for(3, **MODEL), cfg)
        trace: list[tuple[int, float]] = [(0, _settled_rss())]
        step = trainer.step

        def sampled_step(micro_batches):  # the trainer's own step, plus an RSS sample every `every` updates
            losses = step(micro_batches)
            if trainer.iteration in (warmup, iterations) or trainer.iteration % every == 0:
                trace.append((trainer.iteration, _settled_rss()))
            return losses

        trainer.step = sampled_step  # type: ignore[method-assign]
        start = time.perf_counter()
        summary = trainer.run()
        seconds = time.perf_counter() - start
    samples = dict(trace)
    begin, end = samples[warmup], samples[iterations]
    return [
        emit(
            "soak", end, begin, "MiB", params,
            rss_growth_mib=end - begin,
            iterations=summary["iteration"],
            seconds=seconds,
            rss_before_training_mib=samples[0],
            rss_trace_mib=[[i, round(v, 1)] for i, v in trace if i >= warmup],
        )
    ]


if __name__ == "__main__":
    run()
