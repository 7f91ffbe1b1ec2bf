"""``fcos data``: check a dataset, draw its training samples, convert it to another layout, split it,
describe it, or generate the synthetic shapes or a tiled small-object dataset."""

from __future__ import annotations

import argparse
import sys

from fcos.cli.common import (
    Command,
    add_config_flags,
    config_values,
    fraction,
    non_negative_int,
    number,
    positive_float,
    positive_int,
)
from fcos.data.layouts import LAYOUTS
from fcos.utils.flags import IMAGE_SIDE

__all__ = ["DATA"]


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
    shapes.add_argument("--train", type=positive_int, help="training images")
    shapes.add_argument("--val", type=non_negative_int, help="validation images")
    shapes.add_argument("--size", type=positive_int, help="image side, pixels")
    shapes.add_argument("--seed", type=int)
    shapes.add_argument("--occlusion", type=fraction, metavar="SHARE",
                        help="share of the images with partly hidden objects (overlaps, a band across the image) "
                             "and full-extent boxes, as in video")
    tiles = sub.add_parser("tiles", help="pack downscaled images of datasets into tiles of small, dense objects")
    tiles.add_argument("--from", dest="sources", nargs="+", required=True, metavar="DATA",
                       help="datasets with train and val splits (their classes are merged by name)")
    tiles.add_argument("--out", required=True, help="output folder (COCO layout)")
    tiles.add_argument("--train", type=positive_int, default=100, help="training tiles")
    tiles.add_argument("--val", type=non_negative_int, default=20, help="validation tiles")
    tiles.add_argument("--size", type=positive_int, default=640, help="tile side, pixels")
    tiles.add_argument("--cell", type=positive_int, nargs=2, default=(48, 128), metavar=("MIN", "MAX"),
                       help="longer side of each placed image, pixels, drawn per row")
    tiles.add_argument("--fill", type=fraction, default=1.0, help="fraction of slots holding an image (sparser: < 1)")
    tiles.add_argument("--seed", type=int, default=0)
    video = sub.add_parser("shapes-video", help="write a synthetic video of moving shapes with ground-truth identities "
                                                "(MOTChallenge layout) for tracking")
    video.add_argument("--out", default="data/shapes_video", help="output folder (img1/, gt/gt.txt, seqinfo.ini, .mp4)")
    video.add_argument("--frames", type=positive_int, default=300)
    video.add_argument("--size", type=positive_int, default=256, help="side of the square frames, pixels")
    video.add_argument("--objects", type=non_negative_int, default=10, help="objects over the whole sequence")
    video.add_argument("--crossings", type=non_negative_int, default=3, help="pairs of objects made to cross")
    video.add_argument("--occluders", type=non_negative_int, default=1, help="static bands drawn over the objects")
    video.add_argument("--fps", type=positive_float, default=25.0)
    video.add_argument("--seed", type=int, default=0)
    video.add_argument("--no-video", dest="video", action="store_false", help="frames only (no .mp4)")
    formats = [layout.name for layout in LAYOUTS]
    convert = sub.add_parser("convert", help="rewrite a dataset in another layout (every split; images hard-linked)")
    convert.add_argument("--data", required=True, help="the dataset to read (any layout fcos reads)")
    convert.add_argument("--to", required=True, choices=formats, help="the layout to write")
    convert.add_argument("--out", required=True, help="a new or empty folder")
    convert.add_argument("--split", nargs="+", help="the splits to convert (default: every split it has)")
    convert.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    split = sub.add_parser("split", help="divide an image set into train and val, stratified by class")
    split.add_argument("--data", required=True,
                       help="a dataset (--split names the split to divide) or a folder of images with labels and "
                            "no splits (YOLO images/ + labels/, VOC Annotations/)")
    split.add_argument("--out", required=True, help="a new or empty folder")
    split.add_argument("--val", type=fraction, default=0.2, help="fraction of the images for validation")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--split", help="the split to divide (default: the only one, or the whole folder)")
    split.add_argument("--to", choices=formats, help="the layout to write (default: the source's)")
    split.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    stats = sub.add_parser("stats", help="boxes per class, object sizes, image sizes (PNGs, stats.json) and the "
                                         "input size, tiling and class balancing they suggest")
    stats.add_argument("--data", required=True, help="dataset folder (COCO, VOC or YOLO layout), .json or .yaml")
    stats.add_argument("--out", help="folder for the PNGs and stats.json (default: print only)")
    stats.add_argument("--split", nargs="+", help="the splits to describe (default: every split it has)")
    stats.add_argument("--img-size", type=number(int, IMAGE_SIDE),
                       help="the --img-size training will use, to judge tiling at (default 640)")


def _show_args(p: argparse.ArgumentParser) -> None:
    from fcos.engine.train_config import AUGMENT, TRAIN_PRESETS, TrainConfig

    p.add_argument("--data", required=True, help="dataset folder (COCO, VOC or YOLO layout), .json or .yaml")
    p.add_argument("--split", default="train")
    p.add_argument("--out", default="samples.png", help="PNG to write")
    p.add_argument("--count", type=positive_int, default=16, help="samples: the first of training's first epoch")
    p.add_argument("--augment", action="store_true", help="apply the training pipeline (sizing + augmentations)")
    p.add_argument("--recipe", default="official", choices=sorted(TRAIN_PRESETS), help="augmentation defaults")
    p.add_argument("--img-size", type=number(int, IMAGE_SIDE),
                   help="longer image side, as fcos train's (default: --tile's, else the 800/1333 rule)")
    p.add_argument("--seed", type=int, default=0, help="training's seed: the same samples as its first updates")
    add_config_flags({AUGMENT: p.add_argument_group(AUGMENT)}, TrainConfig)


def _show(args: argparse.Namespace) -> int:
    from fcos.data.show import show_samples
    from fcos.engine.train_config import TRAIN_PRESETS, TrainConfig
    from fcos.model.options import ModelOptions

    config = TRAIN_PRESETS[args.recipe](**config_values(args, TrainConfig))  # with --data and --seed
    input_config = ModelOptions(img_size=args.img_size or config.tile).config(1).input  # --tile: its input size
    report = show_samples(args.data, args.out, split=args.split, augment=args.augment, count=args.count,
                          augmentation=config.augmentation(), seed=config.seed, input_config=input_config)
    print(report.summary())
    return 0


def _write_tool(args: argparse.Namespace) -> int:
    """convert, split, stats: each prints its report's summary; a problem in the data is one line."""
    from fcos.data import DatasetError

    try:
        if args.data_command == "convert":
            from fcos.data.convert import convert_dataset

            report = convert_dataset(args.data, args.to, args.out, splits=args.split, link=not args.copy)
        elif args.data_command == "split":
            from fcos.data.split import split_dataset

            report = split_dataset(args.data, args.out, val=args.val, seed=args.seed, split=args.split, fmt=args.to,
                                   link=not args.copy)
        else:
            from fcos.data.stats import dataset_stats

            report = dataset_stats(args.data, args.out, splits=args.split, img_size=args.img_size)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _shapes_video(args: argparse.Namespace) -> int:
    from fcos.data.shapes_video import generate_shapes_video

    writer = None
    if args.video:
        from fcos.predict.video import VideoWriter, require_av

        require_av()
        writer = VideoWriter
    written = generate_shapes_video(args.out, frames=args.frames, size=args.size, objects=args.objects,
                                    crossings=args.crossings, occluders=args.occluders, fps=args.fps, seed=args.seed,
                                    video_writer=writer)
    print(f"wrote the shapes video to {written.root}: {written.length} frames of {written.size} px, {written.objects} "
          f"objects, {written.boxes} ground-truth boxes ({written.gt})" + (f", {written.video}" if written.video else ""))
    return 0


def _data(args: argparse.Namespace) -> int:
    from fcos.data import DatasetError, generate_shapes
    from fcos.data.check import check_splits

    if args.data_command == "show":
        return _show(args)
    if args.data_command == "shapes":
        given = {"num_train": args.train, "num_val": args.val, "image_size": args.size, "seed": args.seed,
                 "occlusion": args.occlusion}
        out = generate_shapes(args.out, **{k: v for k, v in given.items() if v is not None})
        print(f"wrote the shapes dataset to {out}")
        return 0
    if args.data_command == "shapes-video":
        return _shapes_video(args)
    if args.data_command in ("convert", "split", "stats"):
        return _write_tool(args)
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


DATA = Command("check, show, convert, split or describe a dataset; generate the synthetic shapes or a tiled "
               "small-object dataset", _data_args, _data)
