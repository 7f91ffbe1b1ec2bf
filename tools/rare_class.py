"""A training set with one rare class, for measuring ``--repeat-threshold`` (docs/datasets.md).

    python tools/rare_class.py --data ../shared/data/fruit --rare orange --keep 5 --out data/fruit-rare-orange

Train: every training image of ``--data`` without a box of ``--rare``, plus the first ``--keep`` images with
one (in file-name order; all their boxes kept, other classes included). Val: the whole validation split,
unchanged. Written in COCO layout (images hard-linked); prints both splits' counts and ``fcos data stats``'s
suggestions.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from fcos.data.coco import write_coco  # noqa: E402
from fcos.data.layouts import load_splits  # noqa: E402
from fcos.data.records import LoadReport  # noqa: E402
from fcos.data.stats import compute_stats  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset with train and val splits")
    parser.add_argument("--rare", required=True, help="the class to make rare in train")
    parser.add_argument("--keep", type=int, default=5, help="training images with the rare class to keep")
    parser.add_argument("--out", required=True, help="new folder (COCO layout)")
    args = parser.parse_args()
    splits = load_splits(args.data, ["train", "val"])
    train = splits["train"]
    rare = train.class_names.index(args.rare)
    holders = sorted((r for r in train.records if rare in r.labels), key=lambda r: r.path.name)
    kept = {id(r) for r in holders[: args.keep]}
    records = [r for r in train.records if rare not in r.labels or id(r) in kept]
    report = LoadReport(title=f"train: {args.rare} in {args.keep} of {len(holders)} images kept")
    report.tally(records, train.class_names)
    splits["train"] = dataclasses.replace(train, records=records, report=report)
    print(f"kept {', '.join(r.path.name for r in holders[: args.keep])}")
    print(write_coco(splits, args.out).summary())
    print(compute_stats(splits, source=args.out).summary())


if __name__ == "__main__":
    main()
