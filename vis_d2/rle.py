"""Checking COCO run-length encoded masks before pycocotools reads them.

pycocotools trusts its input: a compressed ``counts`` string cut short, or one that does not
cover the frame (``"0"``), decodes to a wrong mask without a word, and ``mask.iou`` can loop for
minutes over the garbage run lengths. :func:`rle_problem` decodes the run lengths (vectorised,
so a dataset's worth of masks is checked in seconds) and says what is wrong, so the metric and
the data loader can refuse a mask naming the file, video and frame it came from;
:func:`rle_problems` checks the masks of a whole track in one pass (numpy's per-call cost, not
the decoding, dominates for one mask).

The compressed format (pycocotools' ``maskApi.c``): each run length is written in 5-bit groups,
least significant first, one character per group (``chr(group + 48)``); bit 0x20 of a character
says another group follows, bit 0x10 of the last group is the sign; from the fourth run on, the
value stored is the difference to the run length two places before.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["decode_rle_counts", "rle_problem", "rle_problems"]

Counts = Union[str, bytes, Sequence[int]]


def _owners(bounds: np.ndarray, index: np.ndarray) -> List[int]:
    """The strings (of cumulative ends ``bounds``) that hold the characters ``index``."""
    return np.unique(np.searchsorted(bounds, index, side="right")).tolist()


def _restarted_cumsum(values: np.ndarray, restart: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` that starts afresh at the sorted indices ``restart``
    (``restart[0] == 0``)."""
    if len(restart) > 1:
        values = values.copy()
        before = np.cumsum(values)[restart[1:] - 1]
        since = before.copy()  # the sum since the previous restart
        since[1:] -= before[:-1]
        values[restart[1:]] -= since
    return np.cumsum(values)


def _decode_many(strings: List[bytes]) -> Tuple[List[Optional[str]], np.ndarray, np.ndarray]:
    """Run lengths of compressed ``counts`` strings, all decoded in one pass.

    Returns:
        problems: per string, what makes it undecodable (None if it decodes);
        runs: (R,) int64, the run lengths of the decodable strings one after another;
        offsets: (N + 1,) int64, string i's runs are ``runs[offsets[i]:offsets[i + 1]]``
            (none for a string with a problem).
    """
    problems: List[Optional[str]] = [None] * len(strings)
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    while True:  # a string found undecodable is set aside and the rest decoded again
        kept = [i for i, p in enumerate(problems) if p is None]
        lengths = np.array([len(strings[i]) for i in kept], dtype=np.int64)
        bounds = np.cumsum(lengths)
        chars = np.frombuffer(b"".join([strings[i] for i in kept]), dtype=np.uint8)
        if chars.size == 0:
            return problems, np.zeros(0, dtype=np.int64), offsets
        if chars.min() < 48 or chars.max() > 111:
            for k in _owners(bounds, np.flatnonzero((chars < 48) | (chars > 111))):
                problems[kept[k]] = "RLE counts hold a character outside the compressed format"
            continue
        c = chars - np.uint8(48)
        more = (c & 0x20) != 0
        cut = np.flatnonzero(more[bounds - 1] & (lengths > 0))
        if cut.size:
            for k in cut.tolist():
                problems[kept[k]] = "RLE counts end inside a run length (cut short?)"
            continue
        # Every kept string ends a run, so no run spans two strings. Most runs are one
        # character; the others (``longer``) end after a character with the 0x20 bit (for a
        # first run of one character, ``more[-1]``, the last character, has none).
        ends = np.flatnonzero(~more)
        longer = np.flatnonzero(more[ends - 1])
        groups = ends[longer] - np.where(longer > 0, ends[longer - 1], -1)  # characters per run
        if not groups.size or groups.max() <= 12:  # 12 groups = 60 bits: no real run length
            break
        for k in _owners(bounds, ends[longer[groups > 12]]):
            problems[kept[k]] = "RLE counts hold a run length too long to be real"
    # A run is its 5-bit groups, least significant first, the last one signed (bit 0x10).
    last = (c[ends] & 0x1F).view(np.int8)
    values = (last - ((last & 0x10) << 1)).astype(np.int64)
    if longer.size:
        starts = ends[longer] - (groups - 1)
        high = values[longer] << (5 * (groups - 1))
        for g in range(int(groups.max()) - 1):
            low = (c[starts + np.minimum(g, groups - 2)] & 0x1F).astype(np.int64) << (5 * g)
            high += np.where(g < groups - 1, low, 0)
        values[longer] = high

    first = np.searchsorted(ends, bounds - lengths).tolist()  # each string's first run
    # From the fourth run on, the stored value is the difference to the run two before: run
    # r >= 1 is the sum of the stored values r, r - 2, ... down to 1 or 2, so a cumulative sum
    # over every other run, started afresh at each string's runs 0, 1 and 2.
    fresh = sorted({f + k for f in first for k in (0, 1, 2)} | {0, 1})
    runs = np.empty_like(values)
    for parity in (0, 1):
        restart = [f // 2 for f in fresh if f % 2 == parity and f < values.size]
        runs[parity::2] = _restarted_cumsum(values[parity::2], np.array(restart, dtype=np.int64))
    offsets[[k + 1 for k in kept]] = np.diff(first + [values.size])
    np.cumsum(offsets, out=offsets)
    return problems, runs, offsets


def decode_rle_counts(counts: Union[str, bytes]) -> np.ndarray:
    """A compressed RLE ``counts`` string -> its run lengths, an int64 array of shape (R,).

    Raises ValueError when the string holds a character outside the format, ends inside a run
    length (as a string cut short does) or holds a run length of more than 60 bits.
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("RLE counts hold a non-ASCII character") from None
    problems, runs, _ = _decode_many([counts])
    if problems[0] is not None:
        raise ValueError(problems[0])
    return runs


def _cover_problem(total: int, negative: bool, height: int, width: int) -> Optional[str]:
    if negative:
        return "RLE counts hold a negative run length"
    if total != height * width:
        return (f"RLE run lengths cover {total} pixels, the {height}x{width} frame has "
                f"{height * width}")
    return None


def rle_problems(counts_list: Sequence[Counts], height: int, width: int) -> List[Optional[str]]:
    """:func:`rle_problem` of each of ``counts_list`` (masks of one ``height`` x ``width``
    video), the compressed strings decoded in one pass."""
    problems: List[Optional[str]] = [None] * len(counts_list)
    strings, where = [], []
    for i, counts in enumerate(counts_list):
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii")
            except UnicodeEncodeError:
                problems[i] = "RLE counts hold a non-ASCII character"
                continue
        if isinstance(counts, bytes):
            strings.append(counts)
            where.append(i)
        elif isinstance(counts, (list, tuple)):
            if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                       for x in counts):
                problems[i] = "uncompressed RLE counts must be integers"
                continue
            try:
                runs = np.asarray(counts, dtype=np.int64)
            except OverflowError:
                problems[i] = "RLE counts hold a run length too long to be real"
                continue
            problems[i] = _cover_problem(int(runs.sum()), bool(runs.size and runs.min() < 0),
                                         height, width)
        else:
            problems[i] = f"RLE 'counts' must be a string or a list, got {type(counts).__name__}"
    if not strings:
        return problems
    decoded, runs, offsets = _decode_many(strings)
    num_runs = np.diff(offsets)
    has_runs = np.flatnonzero(num_runs > 0)
    totals = np.zeros(len(strings), dtype=np.int64)
    minima = np.zeros(len(strings), dtype=np.int64)
    if has_runs.size:
        totals[has_runs] = np.add.reduceat(runs, offsets[has_runs])
        minima[has_runs] = np.minimum.reduceat(runs, offsets[has_runs])
    for k, i in enumerate(where):
        problems[i] = decoded[k] or _cover_problem(int(totals[k]), bool(minima[k] < 0),
                                                   height, width)
    return problems


def rle_problem(counts: Counts, height: int, width: int) -> Optional[str]:
    """What is wrong with RLE ``counts`` (compressed string or uncompressed list of ints) for an
    ``height`` x ``width`` frame, in a phrase; None when the run lengths are non-negative and
    cover the frame exactly."""
    return rle_problems([counts], height, width)[0]
