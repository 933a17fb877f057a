"""Score a YouTube-VIS results file against a ground-truth json.

    python -m vis_d2.evaluation --gt valid_gt.json --results results.json [--json]
        [--class-agnostic] [--long-videos gt_long.json] [--coco-crowd]

Prints a table of AP, AP50, AP75, APs, APm, APl, AR1, AR10 (fractions in [0, 1], "-" where
there is no ground truth), or with ``--json`` one JSON object with those eight keys (-1 where
there is no ground truth). ``--class-agnostic`` scores every track as one category, so the gap to
the plain AP is what classification costs. ``--long-videos FILE`` follows the YouTube-VIS 2022
protocol: the videos FILE lists (a json list of ids, or a YouTube-VIS json such as the server's
``gt_long.json``) and the others are scored separately, one row each, with the mean of their APs
(the 2022 server's mAP); ``--json`` then prints ``{"AP", "short": {...}, "long": {...}}``.
``--coco-crowd`` is non-standard: crowd ground truth scored as COCO does, not as the official
``ytvoseval.py``. A malformed file, or a ground truth with nothing to score (no annotations, no
masks), exits with status 2 and a message naming it.

It imports neither torch nor detectron2 (tests/test_import_graph.py checks).
"""
import argparse
import json
import logging
import sys
import time

from .ytvis_eval import (
    YTVISFormatError,
    evaluate_ytvis,
    evaluate_ytvis_long_videos,
    format_metrics_table,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vis_d2.evaluation",
        description="YouTube-VIS 2019/2021/2022 video mask AP of a results file, as the official "
                    "ytvoseval.py computes it.")
    parser.add_argument("--gt", required=True, help="ground-truth json (YouTube-VIS format)")
    parser.add_argument("--results", required=True,
                        help="results json: [{video_id, category_id, score, segmentations}]")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the eight metrics instead of a table")
    parser.add_argument("--class-agnostic", action="store_true",
                        help="score as if every ground truth and prediction were of one category: "
                             "how much AP is lost to classification alone")
    parser.add_argument("--long-videos", metavar="FILE",
                        help="YouTube-VIS 2022: score the long videos FILE lists (a json list of "
                             "video ids, or a YouTube-VIS json such as gt_long.json) and the "
                             "short ones (the others) separately, and their mean AP")
    parser.add_argument("--coco-crowd", action="store_true",
                        help="non-standard: score crowd ground truth as COCO does (IoU over the "
                             "prediction's area) instead of as the official ytvoseval.py (plain "
                             "IoU)")
    args = parser.parse_args(argv)

    # The metric's warnings (e.g. annotations without a mask) go to stderr, whatever logging
    # the calling process has set up.
    log = logging.getLogger("vis_d2.evaluation")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, False
    start = time.perf_counter()
    options = dict(class_agnostic=args.class_agnostic, coco_crowd=args.coco_crowd)
    try:
        if args.long_videos:
            metrics = evaluate_ytvis_long_videos(args.gt, args.results, args.long_videos,
                                                 **options)
        else:
            metrics = evaluate_ytvis(args.gt, args.results, **options)
    except (YTVISFormatError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_metrics_table(metrics))
        print(f"({time.perf_counter() - start:.2f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
