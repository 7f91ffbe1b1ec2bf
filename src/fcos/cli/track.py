"""``fcos track``: objects followed from frame to frame in a video, a folder of frames, a glob pattern or a
MOTChallenge sequence (ByteTrack), with MOT metrics against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcos.cli.common import (
    Command,
    add_config_flags,
    add_inference_flags,
    add_runtime_flags,
    build_predictor,
    config_values,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["TRACK"]


def _track_args(p: argparse.ArgumentParser) -> None:
    from fcos.track.config import TRACKER, TRACKERS, TrackerConfig
    from fcos.track.linking import LINKING, LinkConfig

    p.add_argument("--weights", required=True,
                   help="fcos checkpoint (.pt), exported model (.onnx, .xml) or a pretrained name")
    p.add_argument("--source", required=True,
                   help="a video, a folder of frames, a glob pattern of frames, or a MOTChallenge sequence folder "
                        "(img1/, seqinfo.ini, gt/gt.txt)")
    p.add_argument("--out", default="runs/track", help="output folder: <name>.mp4, <name>.txt (MOT), <name>_tracks.json")
    p.add_argument("--tracker", choices=tuple(TRACKERS), default="bytetrack")
    p.add_argument("--conf", type=fraction, default=None,
                   help="the detector's score threshold (default: the tracker's --low-score, which its second pass needs)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="track only these of the model's classes")
    p.add_argument("--eval", metavar="GT.txt",
                   help="MOTChallenge ground truth: print MOTA, IDF1, HOTA and ID switches (a sequence folder's own "
                        "gt/gt.txt is used when this is not given)")
    p.add_argument("--fps", type=positive_float, help="frame rate of a folder or pattern (a video's own wins; default 25)")
    p.add_argument("--no-video", dest="video", action="store_false", help="no annotated video (MOT and JSON only)")
    p.add_argument("--trail", type=non_negative_int, default=30, help="frames of each track's trail drawn in the video")
    p.add_argument("--line-width", type=positive_int, metavar="N", help="box line width in px (default: from the frame size)")
    p.add_argument("--show-conf", action="store_true", help="scores in the tags")
    add_runtime_flags(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_config_flags({TRACKER: p.add_argument_group(TRACKER)}, TrackerConfig)
    add_config_flags({LINKING: p.add_argument_group(LINKING)}, LinkConfig)
    add_inference_flags(p)


def _track(args: argparse.Namespace) -> int:
    from fcos.track import LinkConfig, TrackerConfig, evaluate_mot, track_source

    # before the model loads: settings that contradict each other are a SettingError (exit 2)
    config, link = TrackerConfig(**config_values(args, TrackerConfig)), LinkConfig(**config_values(args, LinkConfig))
    if args.eval and not Path(args.eval).is_file():  # not only after the whole source is tracked
        raise FileNotFoundError(f"--eval {args.eval}: ground-truth file not found")
    predictor = build_predictor(args)
    summary = track_source(predictor, args.source, args.out, config=config, tracker=args.tracker, conf=args.conf,
                           classes=args.classes, fps=args.fps, save_video=args.video, trail=args.trail,
                           line_width=args.line_width, show_conf=args.show_conf, progress=args.progress, link=link)
    written = ", ".join(str(p) for p in (summary.video, summary.mot, summary.json) if p is not None)
    linked = "" if summary.tracks_before_linking is None else f" ({summary.tracks_before_linking} before linking)"
    print(f"{summary.name}: {summary.frames} frames ({summary.skipped} skipped), {summary.tracks} tracks{linked}, "
          f"{summary.boxes} tracked boxes; detection {summary.detect_ms:.1f} ms, tracking {summary.track_ms:.2f} ms "
          f"per frame -> {written}")
    gt = args.eval or summary.gt
    if gt:
        print(evaluate_mot(gt, summary.mot, frames=summary.frames).summary())
    return 0


TRACK = Command("follow objects through a video or frames with ByteTrack: annotated video, MOT file, track JSON, "
                "MOT metrics", _track_args, _track)
