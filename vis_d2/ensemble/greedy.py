"""The greedy part of the paper's ensemble (Sec. 3.5.2): which candidate models to merge.

Forward selection on a split with ground truth: start from the best single model, then, while
it raises the AP, add the candidate whose addition gives the highest AP. Every subset tried is
one step of the path, so the path shows why each model is in or out.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

__all__ = ["GreedyStep", "greedy_selection", "format_path"]


@dataclass(frozen=True)
class GreedyStep:
    """One subset tried: its models (in the order they were added), its AP, and whether it
    became the current selection."""

    models: Tuple[str, ...]
    ap: float
    kept: bool


def greedy_selection(candidates: Sequence[str], score: Callable[[Tuple[str, ...]], float]
                     ) -> Tuple[Tuple[str, ...], float, List[GreedyStep]]:
    """Choose models greedily.

    Args:
        candidates: distinct model names.
        score: subset (tuple of names, in the order added) -> AP on the selection split; each
            subset is scored once.

    Returns:
        (selected models in the order added, their AP, the path: every subset tried, in order;
        ``kept`` marks the steps that improved the AP). A candidate is added only if it raises
        the AP strictly; ties between candidates go to the earlier one in ``candidates``.
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("greedy_selection: no candidate models")
    if len(set(candidates)) != len(candidates):
        dup = sorted({c for c in candidates if candidates.count(c) > 1})
        raise ValueError(f"greedy_selection: candidates named twice: {dup}")
    path: List[GreedyStep] = []
    scored: Dict[Tuple[str, ...], float] = {}

    def tried(subset):
        scored[subset] = float(score(subset))
        return scored[subset]

    singles = [((c,), tried((c,))) for c in candidates]
    best_i = max(range(len(singles)), key=lambda i: (singles[i][1], -i))
    selected, best = singles[best_i]
    path.extend(GreedyStep(s, ap, i == best_i) for i, (s, ap) in enumerate(singles))
    remaining = [c for c in candidates if c not in selected]
    while remaining:
        trials = [(selected + (c,), tried(selected + (c,))) for c in remaining]
        j = max(range(len(trials)), key=lambda i: (trials[i][1], -i))
        improved = trials[j][1] > best
        path.extend(GreedyStep(s, ap, improved and i == j) for i, (s, ap) in enumerate(trials))
        if not improved:
            break
        selected, best = trials[j]
        remaining.remove(selected[-1])
    return selected, best, path


def format_path(path: Sequence[GreedyStep]) -> str:
    """The path as text, one subset a line: ``+`` kept, ``-`` not kept."""
    return "\n".join(f"  {'+' if s.kept else '-'} AP {s.ap:.4f}  {' + '.join(s.models)}"
                     for s in path)
