"""``fcos train`` (its flags generated from :class:`~fcos.engine.train_config.TrainConfig` and
:class:`~fcos.model.options.ModelOptions`; ``--config`` reruns a run folder's ``config.yaml``) and
``fcos demo``."""

from __future__ import annotations

import argparse
import os
import sys

from fcos.cli.common import Command, add_config_flags, announce_device, config_values, drop_flag

__all__ = ["DEMO", "TRAIN"]


def _train_args(p: argparse.ArgumentParser) -> None:
    from fcos.engine.train_config import AUGMENT, DATA, RUNTIME, SCHEDULE, TRAIN_PRESETS, TrainConfig
    from fcos.model.options import MODEL, ModelOptions

    groups = {name: p.add_argument_group(name) for name in (DATA, MODEL, SCHEDULE, AUGMENT, RUNTIME)}
    groups[DATA].add_argument(
        "--config", metavar="YAML",
        help="rerun a run folder's config.yaml (model and training settings); flags given beside it change them")
    add_config_flags(groups, ModelOptions)
    groups[SCHEDULE].add_argument(
        "--recipe", choices=sorted(TRAIN_PRESETS),
        help="official (default): SGD 1x recipe; cpu: AdamW + cosine for short from-scratch runs; finetune: SGD at "
             "1/4 of the official rate, 100 warm-up updates (with --weights)")
    add_config_flags(groups, TrainConfig, optional=("data",))
    groups[RUNTIME].add_argument("--devices", type=int, default=1, help="processes on this machine (launches torchrun)")
    groups[RUNTIME].add_argument("--max-restarts", type=int, default=0, metavar="N",
                                 help="restart all processes up to N times when one fails (launches torchrun); "
                                      "they resume from OUT/last.pt")


def _train(args: argparse.Namespace) -> int:
    if args.devices > 1 or args.max_restarts > 0:
        return _launch(args)
    from fcos.engine import launch
    from fcos.engine.run_config import RunConfigError, run_configs
    from fcos.engine.train_config import TrainConfig
    from fcos.engine.trainer import train
    from fcos.model.options import ModelOptions, OptionConflictError

    try:
        model_cfg, cfg = run_configs(train_values=config_values(args, TrainConfig),
                                     options=ModelOptions(**config_values(args, ModelOptions)), recipe=args.recipe,
                                     config_file=args.config)
    except (OptionConflictError, RunConfigError) as exc:  # flags that contradict each other or the weights
        print(f"error: {exc}", file=sys.stderr)
        return 2
    announce_device(cfg.device)  # checked and announced before anything is loaded
    try:
        summary = train(model_cfg, cfg)
        from fcos.utils.distributed import is_main

        report = is_main()  # asked before the process group is gone
    finally:
        launch.cleanup()
    val = summary.get("val") or {}
    if report:
        metrics = f"AP {val['AP']:.4f}  AP50 {val['AP50']:.4f}  " if val else ""
        print(f"done: {metrics}({summary['iteration']} updates, {summary['train_seconds']:.0f} s of training, "
              f"ended by {summary['ended_by'].replace('_', ' ')}) -> {summary['out']}")
    early = summary.get("early_stopping") or {}
    if early.get("stopped") and report:
        print(f"stopped early: no better validation AP in {early['evaluations_without_improvement']} evaluations "
              f"(--patience {early['patience']}); best AP {early['best_AP']:.4f} at update {early['best_iteration']}")
    return 0


def _launch(args: argparse.Namespace) -> int:
    """``--devices`` / ``--max-restarts``: this command again under torchrun, without those two flags."""
    from fcos.engine import launch

    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker would launch torchrun again
        print("error: --devices and --max-restarts launch torchrun; under torchrun, give them to torchrun "
              "(--nproc-per-node, --max-restarts)", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if args.argv is None else list(args.argv)
    return launch.launch_local(args.devices, drop_flag(drop_flag(argv, "--devices"), "--max-restarts"), args.max_restarts)


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--data-dir", default="data/shapes", help="where the shapes dataset is generated")
    p.add_argument("--time-budget", type=float, default=600.0, help="seconds of training (default 10 minutes)")


def _demo(args: argparse.Namespace) -> int:
    from fcos.engine.demo import run_demo

    run_demo(args.out, data_dir=args.data_dir, time_budget=args.time_budget)
    return 0


TRAIN = Command("train FCOS on a dataset", _train_args, _train)
DEMO = Command("generate the shapes dataset, train from scratch on the CPU, evaluate, draw predictions", _demo_args,
               _demo)
