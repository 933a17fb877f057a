"""Score a YouTube-VIS results file against a ground-truth json.

    python -m vis_d2.evaluation --gt valid_gt.json --results results.json [--json] [--class-agnostic]

Prints a table of AP, AP50, AP75, APs, APm, APl, AR1, AR10 (fractions in [0, 1], "-" where
there is no ground truth), or with ``--json`` one JSON object with those eight keys (-1 where
there is no ground truth). ``--class-agnostic`` scores every track as one category, so the gap to
the plain AP is what classification costs. A malformed file exits with status 2 and a message naming it.
"""
import argparse
import json
import sys
import time

from .ytvis_eval import YTVISFormatError, evaluate_ytvis, format_metrics_table


def _load_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise YTVISFormatError(f"{path}: not valid JSON ({e})") from None


def class_agnostic(gt: dict, results: list):
    """Copies of a YouTube-VIS ground truth (dict) and results (list) with every annotation and
    prediction moved to one category (the first of ``gt["categories"]``)."""
    cats = gt.get("categories") if isinstance(gt, dict) else None
    if not cats:
        raise YTVISFormatError("class-agnostic scoring: the ground truth has no 'categories'")
    if not isinstance(results, list):
        raise YTVISFormatError("class-agnostic scoring: the results must be a JSON list")
    cid = cats[0]["id"]
    gt = dict(gt, categories=[dict(cats[0], name="object")],
              annotations=[dict(a, category_id=cid) for a in gt.get("annotations", [])])
    return gt, [dict(p, category_id=cid) if isinstance(p, dict) else p for p in results]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vis_d2.evaluation",
        description="YouTube-VIS 2019/2021 video mask AP of a results file.")
    parser.add_argument("--gt", required=True, help="ground-truth json (YouTube-VIS format)")
    parser.add_argument("--results", required=True,
                        help="results json: [{video_id, category_id, score, segmentations}]")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the eight metrics instead of a table")
    parser.add_argument("--class-agnostic", action="store_true",
                        help="score as if every ground truth and prediction were of one category: "
                             "how much AP is lost to classification alone")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        gt, results = args.gt, args.results
        if args.class_agnostic:
            gt, results = class_agnostic(_load_json(gt), _load_json(results))
        metrics = evaluate_ytvis(gt, results)
    except (YTVISFormatError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_metrics_table(metrics))
        print(f"({time.perf_counter() - start:.2f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
