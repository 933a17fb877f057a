"""Label voting (paper 3.5.4): a track's category is the most frequent label among its frames.

With label voting on, the tracker relaxes its label term so that an object the detector
mislabels in a few frames still links by embedding; the track then carries several labels and
this module picks one. The vote counts frames, as the paper does ("we select the one with
highest frequency"); ``MODEL.VIS.TRACKER.LABEL_VOTE_SCORE_WEIGHTED`` instead sums each label's
scores, so that a few confident frames outvote many uncertain ones. Without label voting the
count vote is the baseline's rule.
"""
from typing import Sequence, Tuple

import numpy as np

from .frame_detections import TrackingInputError

__all__ = ["vote_label", "track_category_and_score"]


def vote_label(labels: Sequence[int], scores: Sequence[float], score_weighted: bool) -> int:
    """The winning label of one track.

    Args:
        labels: (K,) per-frame labels of the track, K >= 1.
        scores: (K,) per-frame scores.
        score_weighted: vote with the sum of scores per label; otherwise with the count.

    Returns:
        The label with the largest vote; ties go to the larger total score, then the
        smaller label.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.size == 0:
        raise TrackingInputError("vote_label: a track needs at least one label")
    if labels.shape != scores.shape:
        raise TrackingInputError(
            f"vote_label: labels {labels.shape} and scores {scores.shape} differ in length")
    uniq, inverse = np.unique(labels, return_inverse=True)   # uniq is sorted ascending
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    totals = np.bincount(inverse, weights=scores, minlength=len(uniq))
    votes = totals if score_weighted else counts
    # np.lexsort sorts by the last key first; the smallest label wins among full ties.
    order = np.lexsort((uniq, -totals, -votes))
    return int(uniq[order[0]])


def track_category_and_score(labels: Sequence[int], scores: Sequence[float],
                             label_voting: bool, score_weighted: bool) -> Tuple[int, float]:
    """(category, score) of one track: the voted label and the mean per-frame score.

    ``score_weighted`` only applies with ``label_voting``; the baseline votes by count.
    """
    label = vote_label(labels, scores, score_weighted=bool(label_voting and score_weighted))
    return label, float(np.mean(np.asarray(scores, dtype=np.float64)))
