"""vis_d2.rle: run lengths decoded as pycocotools encodes them; bad counts named, not scored."""
import numpy as np
import pycocotools.mask as mask_util
import pytest

from vis_d2.rle import decode_rle_counts, rle_problem, rle_problems


def _runs_of(mask: np.ndarray) -> np.ndarray:
    """Uncompressed run lengths of a mask (column-major, starting with background)."""
    flat = mask.flatten(order="F")
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds)
    return np.concatenate(([0], runs)) if flat[0] else runs


def test_decoded_runs_match_the_masks_pycocotools_encoded():
    rng = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(x) for x in rng.integers(1, 200, 2))
        mask = (rng.random((h, w)) < rng.random() * 0.3).astype(np.uint8)
        if t % 3 == 0:  # long runs: several 5-bit groups and negative differences
            mask[:] = 0
            mask[rng.integers(0, h):, rng.integers(0, w):] = 1
        counts = mask_util.encode(np.asfortranarray(mask))["counts"]
        np.testing.assert_array_equal(decode_rle_counts(counts), _runs_of(mask))
        np.testing.assert_array_equal(decode_rle_counts(counts.decode()), _runs_of(mask))
        assert rle_problem(counts, h, w) is None


def _frame_counts() -> bytes:
    mask = np.zeros((72, 128), np.uint8, order="F")
    mask[10:40, 20:90] = 1
    return mask_util.encode(mask)["counts"]


@pytest.mark.parametrize("counts, fragment", [
    (lambda c: c[: len(c) // 2], "cover"),
    (lambda c: b"0", "cover 0 pixels"),
    (lambda c: c + b"3", "cover"),
    (lambda c: c[:-1] + b"P", "end inside a run length"),
    (lambda c: c + b"\x7f", "outside the compressed format"),
    (lambda c: "é", "non-ASCII"),
    (lambda c: [0, 9215, -1, 2], "negative run length"),
    (lambda c: [0, 9000], "cover 9000 pixels"),
    (lambda c: [0, 9216.0], "must be integers"),
    (lambda c: None, "must be a string or a list"),
])
def test_bad_counts_are_described(counts, fragment):
    assert fragment in rle_problem(counts(_frame_counts()), 72, 128)


def test_uncompressed_counts_that_cover_the_frame_pass():
    assert rle_problem([0, 9216], 72, 128) is None
    assert rle_problem([100, 16, 9100], 72, 128) is None


def test_a_batch_answers_as_mask_by_mask():
    """rle_problems decodes a track's strings in one pass: a bad string (set aside) must not
    change the answer for the strings around it."""
    rng = np.random.default_rng(2)
    masks = [rng.random((72, 128)) < 0.2 for _ in range(3)] + [np.zeros((72, 128), bool)]
    good = [mask_util.encode(np.asfortranarray(m.astype(np.uint8)))["counts"] for m in masks]
    good.append(_frame_counts().decode())
    c = _frame_counts()
    bad = [c[: len(c) // 2], b"0", c + b"3", c[:-1] + b"P", c + b"\x7f", "\u00e9", b"",
           b"o" * 13 + b"0", [0, 9000], None]
    batch = [x for k, b in enumerate(bad) for x in (good[k % len(good)], b)] + good
    answers = rle_problems(batch, 72, 128)
    assert answers == [rle_problem(x, 72, 128) for x in batch]
    assert [a is None for a in answers] == [k % 2 == 0 for k in range(2 * len(bad))] + \
        [True] * len(good)
    assert rle_problems([], 72, 128) == []
