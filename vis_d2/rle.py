"""Checking COCO run-length encoded masks before pycocotools reads them.

pycocotools trusts its input: a compressed ``counts`` string cut short, or one that does not
cover the frame (``"0"``), decodes to a wrong mask without a word, and ``mask.iou`` can loop for
minutes over the garbage run lengths. :func:`rle_problem` decodes the run lengths (vectorised,
so a dataset's worth of masks is checked in seconds) and says what is wrong, so the metric and
the data loader can refuse a mask naming the file, video and frame it came from.

The compressed format (pycocotools' ``maskApi.c``): each run length is written in 5-bit groups,
least significant first, one character per group (``chr(group + 48)``); bit 0x20 of a character
says another group follows, bit 0x10 of the last group is the sign; from the fourth run on, the
value stored is the difference to the run length two places before.
"""
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["decode_rle_counts", "rle_problem"]


def decode_rle_counts(counts: Union[str, bytes]) -> np.ndarray:
    """A compressed RLE ``counts`` string -> its run lengths, an int64 array of shape (R,).

    Raises ValueError when the string holds a character outside the format or ends inside a
    run length (as a string cut short does).
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("RLE counts hold a non-ASCII character") from None
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("RLE counts hold a character outside the compressed format")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts end inside a run length (cut short?)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    if np.max(ends - starts) >= 12:  # 12 groups = 60 bits: no run length of a real mask
        raise ValueError("RLE counts hold a run length too long to be real")
    pos = np.arange(c.size) - np.repeat(starts, ends - starts + 1)
    values = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (pos[ends[negative]] + 1))
    # From the fourth run on, the stored value is the difference to the run two before.
    if values.size > 3:
        values[3::2] = values[1] + np.cumsum(values[3::2])
        values[4::2] = values[2] + np.cumsum(values[4::2])
    return values


def rle_problem(counts: Union[str, bytes, Sequence[int]], height: int, width: int) -> Optional[str]:
    """What is wrong with RLE ``counts`` (compressed string or uncompressed list of ints) for an
    ``height`` x ``width`` frame, in a phrase; None when the run lengths are non-negative and
    cover the frame exactly."""
    if isinstance(counts, (str, bytes)):
        try:
            runs = decode_rle_counts(counts)
        except ValueError as e:
            return str(e)
    elif isinstance(counts, (list, tuple)):
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in counts):
            return "uncompressed RLE counts must be integers"
        runs = np.asarray(counts, dtype=np.int64)
    else:
        return f"RLE 'counts' must be a string or a list, got {type(counts).__name__}"
    if runs.size and runs.min() < 0:
        return "RLE counts hold a negative run length"
    total = int(runs.sum())
    if total != height * width:
        return (f"RLE run lengths cover {total} pixels, the {height}x{width} frame has "
                f"{height * width}")
    return None
