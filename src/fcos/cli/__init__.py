"""Command line: ``fcos <command>``. Each command parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["main"]

# name -> (help, add_arguments, run); commands register themselves in their own modules' functions below.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, add_arguments, run)
        return run

    return register


def _conv3x3_choices() -> tuple[str, ...]:
    """The 3x3 convolution algorithms: the training flag's and the exported graph's (fcos export, benchmark)."""
    from fcos.config import CONV3X3_ALGORITHMS

    return CONV3X3_ALGORITHMS


def _train_args(p: argparse.ArgumentParser) -> None:
    from fcos.config import PRESETS
    from fcos.engine.train_config import AUGMENT, DATA, RUNTIME, SCHEDULE, TRAIN_PRESETS, TrainConfig
    from fcos.model.backbones import BACKBONES

    groups = {name: p.add_argument_group(name) for name in (DATA, "model", SCHEDULE, AUGMENT, RUNTIME)}
    g = groups["model"]
    g.add_argument("--preset", choices=sorted(PRESETS), help="default: official, or that of --weights")
    # A validator, not argparse choices: timm:<model> is open-ended (the error lists the registered names).
    g.add_argument("--backbone", type=_backbone_name, metavar="NAME",
                   help=f"resnet50 (default), one of {', '.join(BACKBONES)} (`fcos models`), or timm:<model>")
    g.add_argument("--img-size", type=int, help="longer image side (default: the preset's 800/1333 rule)")
    g.add_argument("--fpn-channels", type=int, help="FPN and head width (official 256)")
    g.add_argument("--head-convs", type=int, help="convs per head tower (official 4)")
    g.add_argument("--backbone-weights", metavar="WEIGHTS",
                   help="imagenet (downloaded once to the torch hub cache), a torchvision weights name or a local "
                        "state dict; freezes BatchNorm, the stem and stage 1")
    g.add_argument("--freeze-stages", type=int, metavar="N",
                   help="backbone stages frozen from the input: 0 none, 1 stem, 2 + stage 1 (pretrained default), 5 all")
    g.add_argument("--regression", choices=("relu", "softplus"),
                   help="box distances from the raw output: relu (official) or softplus (a gradient everywhere: "
                        "no dead regression; the cpu recipe's default)")
    g.add_argument("--conv3x3", choices=_conv3x3_choices(),
                   help="head/FPN 3x3 convolution algorithm (default: the preset's; auto = Winograd on CPU)")
    groups[SCHEDULE].add_argument("--recipe", default="official", choices=sorted(TRAIN_PRESETS),
                                  help="official: SGD 1x recipe; cpu: AdamW + cosine for short from-scratch runs; "
                                       "finetune: SGD at 1/4 of the official rate, 100 warm-up updates (with --weights)")
    add_config_flags(groups, TrainConfig)
    groups[RUNTIME].add_argument("--devices", type=int, default=1, help="processes on this machine (launches torchrun)")
    groups[RUNTIME].add_argument("--max-restarts", type=int, default=0, metavar="N",
                                 help="restart all processes up to N times when one fails (launches torchrun); "
                                      "they resume from OUT/last.pt")


def add_config_flags(groups: dict[str, argparse._ArgumentGroup], config_class: type) -> None:
    """One flag per field of a config dataclass (``--max-iters`` for ``max_iters``) whose group is in
    ``groups``, with the help its ``metadata`` names; type, choices (``Literal``) and ``--x/--no-x``
    (``bool``) follow the annotation, or ``metadata["parse"]`` (text -> value, ValueError when bad) and
    ``metavar``. Unset flags are absent from the namespace: the recipe's default applies."""
    hints = get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if f.metadata.get("group", "options") not in groups:
            continue
        kind, optional = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata.get("help")}
        if f.metadata.get("required"):
            kwargs["required"] = True
        if "parse" in f.metadata:
            kwargs.update(type=_parser(f.metadata["parse"]), metavar=f.metadata.get("metavar"))
        elif kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(kind) is Literal:
            kwargs["choices"] = get_args(kind)
        elif get_origin(kind) is tuple:
            kwargs.update(type=get_args(kind)[0], nargs="+")
        else:
            kwargs["type"] = _none_or(kind) if optional else kind
            kwargs["metavar"] = {int: "N", float: "X"}.get(kind)
        if "const" in f.metadata:
            kwargs.update(nargs="?", const=f.metadata["const"])
        groups[f.metadata.get("group", "options")].add_argument("--" + f.name.replace("_", "-"), **kwargs)


def config_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of ``config_class`` given on the command line (tuples for multi-value flags)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    args = [a for a in get_args(kind) if a is not type(None)]
    if get_origin(kind) in (Union, UnionType) and len(args) == 1:
        return args[0], True
    return kind, False


def _parser(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` with its ValueError's message shown by argparse as it is."""
    def run(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return run


def _none_or(kind: type) -> Callable[[str], Any]:
    """Parse ``kind``, or the word 'none' as None (an optional field set to nothing)."""
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


@command("train", "train FCOS on a dataset", _train_args)
def _train(args: argparse.Namespace) -> int:
    if args.devices > 1 or args.max_restarts > 0:
        import os

        from fcos.engine.launch import launch_local

        if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker would launch torchrun again
            print("error: --devices and --max-restarts launch torchrun; under torchrun, give them to torchrun "
                  "(--nproc-per-node, --max-restarts)", file=sys.stderr)
            return 2
        argv = sys.argv[1:] if args.argv is None else list(args.argv)
        return launch_local(args.devices, _drop_flag(_drop_flag(argv, "--devices"), "--max-restarts"), args.max_restarts)
    from fcos.engine.train_config import TRAIN_PRESETS, TrainConfig, recipe_model
    from fcos.engine.trainer import train
    from fcos.model.options import model_config_for

    cfg = TRAIN_PRESETS[args.recipe](**config_values(args, TrainConfig))
    options = {"img_size": args.img_size, "fpn_channels": args.fpn_channels, "head_convs": args.head_convs,
               "backbone_weights": args.backbone_weights, "frozen_stages": args.freeze_stages,
               **({"conv3x3": args.conv3x3} if args.conv3x3 else {})}
    if cfg.weights:  # fine-tuning: the model is the weights' own, changed only where asked
        from fcos.weights.finetune import OptionConflictError, finetune_config

        try:
            model_cfg = finetune_config(cfg.weights, preset=args.preset, backbone=args.backbone, **options,
                                        **({"head.regression": args.regression} if args.regression else {}))
        except OptionConflictError as exc:  # a flag that contradicts the weights: a usage error
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        model_cfg = model_config_for(1, preset=args.preset or "official", backbone=args.backbone or "resnet50",
                                     **options, **recipe_model(args.recipe, args.regression))
    from fcos.engine.launch import cleanup
    from fcos.utils.distributed import is_main

    _device(cfg.device)  # checked and announced before anything is loaded
    try:
        summary = train(model_cfg, cfg)
        report = is_main()  # asked before the process group is gone
    finally:
        cleanup()
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


def _backbone_name(name: str) -> str:
    from fcos.model.backbones import BackboneError, check_backbone_name

    try:
        return check_backbone_name(name)
    except BackboneError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _drop_flag(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == flag:
            skip = True
        elif not item.startswith(flag + "="):
            out.append(item)
    return out


_DEVICE_HELP = "auto (default: CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps"


def _device(name: str, kinds: Sequence[str] | None = None) -> Any:
    """The command's device (:func:`fcos.devices.resolve_device`), announced by the main process."""
    import os

    from fcos.utils.devices import DEVICE_KINDS, describe_device, resolve_device

    device = resolve_device(name, kinds=kinds or DEVICE_KINDS)
    if os.environ.get("RANK", "0") == "0":
        print(f"device: {describe_device(device)}")
    return device


def _predictor_device(args: argparse.Namespace) -> str:
    """Predict, eval and serve: an exported model runs where its runtime can run it (ONNX Runtime: CUDA
    only with its CUDA provider; OpenVINO: the CPU)."""
    from fcos.export.runtime import backend_for

    backend = getattr(args, "backend", None) or backend_for(args.weights)
    if backend is None or backend == "torch":
        return str(_device(args.device))
    kinds: tuple[str, ...] = ("cpu",)
    if backend == "onnxruntime":
        import onnxruntime as ort

        kinds = ("cuda", "cpu") if "CUDAExecutionProvider" in ort.get_available_providers() else ("cpu",)
    return str(_device(args.device, kinds))


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml: its COCO AP as deployed) or a pretrained name")
    p.add_argument("--data", required=True, help="dataset directory or data YAML")
    p.add_argument("--split", default="val")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--out", default="runs/eval",
                   help="folder for pr_curves.png, confusion_matrix.png, per_class.csv and per_class.json")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the PR curves, confusion matrix and per-class table (--no-plots: metrics only)")
    p.add_argument("--matrix-conf", type=float, default=None, metavar="X",
                   help="confusion matrix: minimum detection score (default 0.25)")
    p.add_argument("--matrix-iou", type=float, default=None, metavar="X",
                   help="confusion matrix: minimum IoU of a detection and the box it finds (default 0.5)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)


@command("eval", "COCO evaluation (faster-coco-eval / pycocotools) of a checkpoint on a dataset split", _eval_args)
def _eval(args: argparse.Namespace) -> int:
    import json

    from fcos.data import load_annotations, remap_classes
    from fcos.evaluation.coco import METRIC_NAMES
    from fcos.evaluation.evaluator import run_evaluation
    from fcos.export.runtime import backend_for
    from fcos.utils.files import write_text
    from fcos.weights.resolve import load_weights

    if backend_for(args.weights):  # an exported model: the same evaluation through its Predictor
        from fcos.predict import Predictor

        device = _predictor_device(args)
        predictor = Predictor(args.weights, device=device)
        model, class_names = predictor.as_detector(), predictor.class_names
    else:
        device = _device(args.device)
        model, state = load_weights(args.weights, device)
        class_names = state["class_names"]
    data = remap_classes(load_annotations(args.data, args.split), class_names)
    result = run_evaluation(model, data, batch_size=args.batch_size, workers=args.workers, device=device)
    metrics = result.metrics
    print(f"{len(data)} images, {data.report.boxes} boxes, {data.num_classes} classes")
    for name in METRIC_NAMES[:6]:
        print(f"  {name:5s} {metrics[name]:.4f}")
    width = max(len(n) for n in metrics["per_class"])
    print("  per-class AP (IoU .50:.95)")
    for name, ap in metrics["per_class"].items():
        print(f"    {name:{width}s} {ap:.4f}")
    if args.json:
        write_text(args.json, json.dumps(metrics, indent=2))
    if args.plots:
        from fcos.evaluation.diagnostics import MATRIX_CONF, MATRIX_IOU, write_diagnostics

        conf = MATRIX_CONF if args.matrix_conf is None else args.matrix_conf
        iou = MATRIX_IOU if args.matrix_iou is None else args.matrix_iou
        written = write_diagnostics(result, data, args.out, conf=conf, iou=iou)
        print(f"wrote {', '.join(p.name for p in written)} to {args.out}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--data-dir", default="data/shapes", help="where the shapes dataset is generated")
    p.add_argument("--time-budget", type=float, default=600.0, help="seconds of training (default 10 minutes)")


@command("demo", "generate the shapes dataset, train from scratch on the CPU, evaluate, draw predictions", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    from fcos.engine.demo import run_demo

    run_demo(args.out, data_dir=args.data_dir, time_budget=args.time_budget)
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True)
    check = sub.add_parser("check", help="load a split as training would and decode every image")
    check.add_argument("--data", required=True, help="dataset folder (COCO, VOC or YOLO layout), .json or .yaml")
    check.add_argument("--split", help="the split to check (default: every split the dataset has: train, val, test)")
    check.add_argument("--skip-bad-images", action="store_true",
                       help="count and name unreadable images instead of stopping at the first")
    show = sub.add_parser("show", help="draw a grid of training samples with their boxes and class names "
                                        "(--augment: as training augments them) into a PNG")
    _show_args(show)
    shapes = sub.add_parser("shapes", help="write the synthetic shapes dataset in COCO layout")
    shapes.add_argument("--out", required=True, help="output folder")
    # None = the library's default (fcos.data.generate_shapes), so defaults live in one place.
    shapes.add_argument("--train", type=int, help="training images")
    shapes.add_argument("--val", type=int, help="validation images")
    shapes.add_argument("--size", type=int, help="image side, pixels")
    shapes.add_argument("--seed", type=int)
    tiles = sub.add_parser("tiles", help="pack downscaled images of datasets into tiles of small, dense objects")
    tiles.add_argument("--from", dest="sources", nargs="+", required=True, metavar="DATA",
                       help="datasets with train and val splits (their classes are merged by name)")
    tiles.add_argument("--out", required=True, help="output folder (COCO layout)")
    tiles.add_argument("--train", type=int, default=100, help="training tiles")
    tiles.add_argument("--val", type=int, default=20, help="validation tiles")
    tiles.add_argument("--size", type=int, default=640, help="tile side, pixels")
    tiles.add_argument("--cell", type=int, nargs=2, default=(48, 128), metavar=("MIN", "MAX"),
                       help="longer side of each placed image, pixels, drawn per row")
    tiles.add_argument("--fill", type=float, default=1.0, help="fraction of slots holding an image (sparser: < 1)")
    tiles.add_argument("--seed", type=int, default=0)


def _show_args(p: argparse.ArgumentParser) -> None:
    from fcos.engine.train_config import AUGMENT, TRAIN_PRESETS, TrainConfig

    p.add_argument("--data", required=True, help="dataset folder (COCO, VOC or YOLO layout), .json or .yaml")
    p.add_argument("--split", default="train")
    p.add_argument("--out", default="samples.png", help="PNG to write")
    p.add_argument("--count", type=_positive_int, default=16, help="samples: the first of training's first epoch")
    p.add_argument("--augment", action="store_true", help="apply the training pipeline (sizing + augmentations)")
    p.add_argument("--recipe", default="official", choices=sorted(TRAIN_PRESETS), help="augmentation defaults")
    p.add_argument("--img-size", type=int, help="longer image side, as fcos train's (default: the 800/1333 rule)")
    p.add_argument("--seed", type=int, default=0, help="training's seed: the same samples as its first updates")
    add_config_flags({AUGMENT: p.add_argument_group(AUGMENT)}, TrainConfig)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _show(args: argparse.Namespace) -> int:
    from fcos.data.show import show_samples
    from fcos.engine.train_config import TRAIN_PRESETS, TrainConfig
    from fcos.model.options import model_config_for

    config = TRAIN_PRESETS[args.recipe](**config_values(args, TrainConfig))  # with --data and --seed
    input_config = model_config_for(1, img_size=args.img_size).input
    report = show_samples(args.data, args.out, split=args.split, augment=args.augment, count=args.count,
                          augmentation=config.augmentation(), seed=config.seed, input_config=input_config)
    print(report.summary())
    return 0


@command("data", "check a dataset, draw its training samples, or generate the synthetic shapes or a tiled small-object dataset", _data_args)
def _data(args: argparse.Namespace) -> int:
    from fcos.data import DatasetError, generate_shapes
    from fcos.data.check import check_splits

    if args.data_command == "show":
        return _show(args)
    if args.data_command == "shapes":
        given = {"num_train": args.train, "num_val": args.val, "image_size": args.size, "seed": args.seed}
        out = generate_shapes(args.out, **{k: v for k, v in given.items() if v is not None})
        print(f"wrote the shapes dataset to {out}")
        return 0
    if args.data_command == "tiles":
        from fcos.data.tiles import generate_tiles

        out = generate_tiles(args.sources, args.out, num_train=args.train, num_val=args.val, size=args.size,
                             cell=tuple(args.cell), fill=args.fill, seed=args.seed)
        print(f"wrote the tiled dataset to {out}")
        return 0
    try:
        check_splits(args.data, [args.split] if args.split else None, skip_bad_images=args.skip_bad_images)
    except DatasetError as e:  # a problem in the data, not a bug: the message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml) or a pretrained name")
    p.add_argument("--source", required=True,
                   help="an image, a video, a folder of them, or a glob pattern (quoted: 'photos/**/*.jpg')")
    p.add_argument("--out", default="runs/predict", help="output folder: drawn images and videos, predictions.json")
    p.add_argument("--conf", type=float, default=0.3, help="minimum score of reported detections")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default=None,
                   help="default: by the weights suffix")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--recursive", action="store_true", help="a folder source: its subfolders too (outputs mirror them)")
    p.add_argument("--save-txt", action="store_true",
                   help="YOLO labels in OUT/labels/: class cx cy w h score per line, normalised")
    p.add_argument("--save-crops", action="store_true", help="each detection's crop in OUT/crops/<class>/")
    p.add_argument("--hide-labels", action="store_true", help="draw boxes without class tags")
    p.add_argument("--hide-conf", action="store_true", help="tags without scores")
    p.add_argument("--line-width", type=int, metavar="N", help="box line width in px (default: from the image size)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


@command("predict", "detect objects in images, folders, glob patterns or videos; write drawn images and videos, "
                    "COCO-format JSON, optionally YOLO labels and crops", _predict_args)
def _predict(args: argparse.Namespace) -> int:
    from fcos.predict import Predictor, predict_source

    predictor = Predictor(args.weights, device=_predictor_device(args), backend=args.backend)
    out = predict_source(predictor, args.source, args.out, conf=args.conf, recursive=args.recursive,
                         save_txt=args.save_txt, save_crops=args.save_crops, line_width=args.line_width,
                         show_labels=not args.hide_labels, show_conf=not args.hide_conf, progress=args.progress)
    print(f"wrote {out / 'predictions.json'} and drawn images to {out}")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt) or a pretrained name (fcos models)")
    p.add_argument("--format", choices=("onnx", "openvino"), default="onnx",
                   help="onnx: one .onnx (ONNX Runtime); openvino: OpenVINO IR, .xml + .bin")
    p.add_argument("--out", default=None, help="file to write (default: model.onnx / model.xml)")
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="fixed input size (multiples of 32; fp32 graphs then get Winograd convolutions, faster on "
                        "CPUs: --conv3x3); default: dynamic height and width")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch axis (default: batch 1)")
    p.add_argument("--nms", action=argparse.BooleanOptionalAction, default=True,
                   help="class-aware NMS inside the graph (--no-nms: output candidates for the caller's NMS)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: fcos.export.DEFAULT_OPSET, 17)")
    p.add_argument("--conv3x3", choices=_conv3x3_choices(), default="auto",
                   help="3x3 convolutions in the graph (head, FPN outputs, ResNet blocks of >= 256 channels): "
                        "auto = Winograd operators on maps of >= 32x32 points of a fixed-size (--img-size) fp32 "
                        "export (faster on CPU runtimes); direct = plain Conv nodes (for GPU runtimes); "
                        "winograd = on every level")
    g = p.add_argument_group("int8 (static post-training quantization)")
    g.add_argument("--int8", action="store_true", help="quantize the network to int8, calibrated on --calib-data")
    g.add_argument("--calib-data", help="dataset whose training images calibrate int8 (any layout fcos reads)")
    g.add_argument("--calib-images", type=int, default=None, help="calibration images (default: fcos.export.DEFAULT_CALIB_IMAGES, 32)")
    g.add_argument("--calib-split", default="train", help="split of --calib-data to calibrate on")
    g.add_argument("--seed", type=int, default=0, help="picks the calibration images (same seed, same int8 model)")


def _calibration(args: argparse.Namespace):
    """The int8 calibration the flags ask for, None for fp32; calibration flags without --int8 are an error."""
    from fcos.export import DEFAULT_CALIB_IMAGES, Calibration

    if not args.int8:
        if args.calib_data or args.calib_images is not None:
            raise SystemExit("error: --calib-data / --calib-images calibrate int8: add --int8")
        return None
    if not args.calib_data:
        raise SystemExit("error: --int8 needs --calib-data DATA (training images that set the int8 ranges)")
    return Calibration(args.calib_data, args.calib_images or DEFAULT_CALIB_IMAGES, args.calib_split, args.seed)


@command("export", "export a checkpoint to ONNX or OpenVINO (network + decoding + NMS), fp32 or int8", _export_args)
def _export(args: argparse.Namespace) -> int:
    from fcos.export import DEFAULT_OPSET, FORMATS, export

    out = args.out or "model" + FORMATS[args.format]
    path = export(args.weights, out, args.format, img_size=args.img_size, dynamic=args.dynamic, nms=args.nms,
                  opset=args.opset or DEFAULT_OPSET, int8=_calibration(args), conv3x3=args.conv3x3)
    print(f"wrote {path}" + (f" and {path.with_suffix('.bin')}" if args.format == "openvino" else ""))
    return 0


def _benchmark_args(p: argparse.ArgumentParser) -> None:
    from fcos.predict.benchmark import DEFAULT_ROWS

    p.add_argument("--weights", required=True, help="fcos checkpoint (.pt) or a pretrained name")
    p.add_argument("--data", required=True, help="dataset: AP on --split, int8 calibration on --calib-split")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="runs/benchmark", help="folder for the exported files and benchmark.json / .csv")
    p.add_argument("--formats", nargs="+", default=list(DEFAULT_ROWS), metavar="FORMAT/PRECISION",
                   help=f"rows to measure (default: {' '.join(DEFAULT_ROWS)})")
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="fixed export input size (default: dynamic, as fcos export)")
    p.add_argument("--conv3x3", choices=_conv3x3_choices(), default="auto",
                   help="3x3 convolutions of the fp32 graphs, as fcos export --conv3x3")
    p.add_argument("--calib-images", type=int, default=None, help="int8 calibration images (default 32)")
    p.add_argument("--calib-split", default="train")
    p.add_argument("--runs", type=int, default=20, help="timed runs per row (median reported)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: PyTorch's)")


@command("benchmark", "export to every format and precision; table of file size, latency and COCO AP", _benchmark_args)
def _benchmark(args: argparse.Namespace) -> int:
    from fcos.predict.benchmark import run_benchmark

    run_benchmark(args.weights, args.data, args.out, rows=args.formats, split=args.split, img_size=args.img_size,
                  calib_images=args.calib_images, calib_split=args.calib_split, runs=args.runs, threads=args.threads,
                  conv3x3=args.conv3x3)
    return 0


def _models_args(p: argparse.ArgumentParser) -> None:
    pass


@command("models", "list the pretrained names for --weights and the backbones, with the files they need", _models_args)
def _models(args: argparse.Namespace) -> int:
    from fcos.weights.pretrained import describe_models

    print(describe_models())
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml) or a pretrained name")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default=None,
                   help="default: by the weights suffix")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload")
    p.add_argument("--max-concurrency", type=int, default=2, help="inferences running at once")


@command("serve", "serve predictions over HTTP with an upload page at /", _serve_args)
def _serve(args: argparse.Namespace) -> int:
    from fcos.serve import serve

    serve(args.weights, host=args.host, port=args.port, backend=args.backend, device=_predictor_device(args),
          max_upload_mb=args.max_upload_mb, max_concurrency=args.max_concurrency)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fcos.data import DatasetError
    from fcos.data.images import ImageError
    from fcos.export.runtime import ExportedModelError
    from fcos.model.backbones import BackboneError
    from fcos.predict.video import VideoError
    from fcos.utils.devices import DeviceError
    from fcos.utils.files import WriteError
    from fcos.utils.optional import MissingExtraError
    from fcos.weights.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    try:
        return int(args.run(args) or 0)
    # Problems of the inputs, not bugs: one line, no traceback (WeightsUnavailableError is a FileNotFoundError).
    except (DatasetError, ImageError, CheckpointError, BackboneError, WriteError, DeviceError, FileNotFoundError,
            ExportedModelError, MissingExtraError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if type(exc).__name__ not in ("NonFiniteLossError", "TrainingCollapsedError"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
