"""An unlabeled video split from a labelled json: the same videos and categories, no annotations.

    python -m vis_d2.pseudo_labels.unlabeled SRC.json DST.json

Pseudo labels must come from videos that are not evaluated (paper Sec. 3.5.3 labels the
benchmark's valid set, whose ground truth is hidden). The synthetic benchmark has no hidden
split, so its demo renders videos of another seed and strips their annotations with this
(docs/INFERENCE.md, "Pseudo labels"). The output is written atomically.
"""
import argparse
import os
from typing import Optional, Sequence

from ..file_io import atomic_write_json
from .writer import read_split_json

__all__ = ["strip_annotations", "main"]


def strip_annotations(src: str, dst: str) -> dict:
    """Write ``src`` without its ``annotations`` to ``dst``; returns the written json.

    Raises:
        ValueError when ``dst`` is ``src`` (it would destroy the annotations) or ``src`` is not
        a YouTube-VIS json.
    """
    if os.path.realpath(src) == os.path.realpath(dst):
        raise ValueError(f"{dst}: the output would replace its own source; give another path")
    data = read_split_json(src)
    out = {k: v for k, v in data.items() if k != "annotations"}
    out["info"] = dict(data.get("info") or {},
                       unlabeled_from=os.path.abspath(src),
                       description=f"{(data.get('info') or {}).get('description', src)}, "
                                   "annotations stripped")
    atomic_write_json(dst, out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m vis_d2.pseudo_labels.unlabeled",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="a YouTube-VIS json")
    ap.add_argument("dst", help="the json to write: src's videos and categories only")
    args = ap.parse_args(argv)
    try:
        out = strip_annotations(args.src, args.dst)
    except (OSError, ValueError) as e:
        ap.error(str(e))
    print(f"wrote {args.dst}: {len(out['videos'])} videos without annotations")
    return out


if __name__ == "__main__":
    main()
