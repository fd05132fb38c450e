"""The Pareto front of (clean accuracy, robust accuracy) pairs, both maximised."""
from __future__ import annotations

import math
from typing import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates. NaN points are never on it.

    One sweep over the points sorted by the first objective (descending, ties by the second
    descending): a point is on the front iff its second objective beats every point seen before
    it, or it ties the best point exactly (duplicates dominate neither each other)."""
    finite = [i for i, p in enumerate(points) if not any(math.isnan(v) for v in p)]
    order = sorted(finite, key=lambda i: (-points[i][0], -points[i][1]))
    front: list[int] = []
    best: tuple[float, float] | None = None
    for i in order:
        point = (points[i][0], points[i][1])
        if best is None or point[1] > best[1] or point == best:
            front.append(i)
            if best is None or point[1] > best[1]:
                best = point
    return sorted(front)
