"""The fit of :class:`xrmod.status.Status` for a statistic given as a function of ln kT.

Plain Python and SciPy, for any profiled statistic C(x), x = ln kT: the
reference engine's (NumPy folds) and the xspec engine's (XSPEC's own
statistic with kT frozen and the norm fitted, where XSPEC's fit and error
search meet one of the model's jumps). The compiled native engine implements
the same definition in ``ext/_fit.pyx``.

The model's jumps split the x range into smooth pieces
(:func:`smooth_pieces`); each piece is minimised on its own (bounded Brent and
its two edges), the lowest minimum is the best fit, and the bounds are the
outermost crossings of C_min + Δ, found with brentq inside pieces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from xrmod.status import JUMP_TOLERANCE, Status

__all__ = ["PieceFit", "fit_pieces", "smooth_pieces"]

#: Tolerance in x of each piece's minimum and of each crossing.
XATOL_MINIMUM = 1.0e-7
XTOL_CROSSING = 1.0e-9


def smooth_pieces(
    x_limits: tuple[float, float], jumps: Sequence[float]
) -> list[tuple[float, float]]:
    """(a, b) in x = ln kT of the pieces between the jumps (kT, keV) inside *x_limits*.

    A piece ends just short of a jump and the next starts just beyond it:
    kT · (1 ∓ :data:`xrmod.models.KT_SIDE_EPS`), the two sides of the model there.
    """
    from xrmod.models import KT_SIDE_EPS

    lo, hi = x_limits
    left, right = math.log1p(-KT_SIDE_EPS), math.log1p(KT_SIDE_EPS)
    inner = [math.log(kt) for kt in sorted(jumps)]
    inner = [x for x in inner if lo < x + left and x + right < hi]
    return list(
        zip([lo, *(x + right for x in inner)], [*(x + left for x in inner), hi], strict=True)
    )


@dataclass(frozen=True)
class PieceFit:
    """The outcome of :func:`fit_pieces` (x = ln kT).

    Attributes
    ----------
    x_min, c_min : float
        The best fit and the statistic there (NaN when the fit failed).
    x_lo, x_hi : float
        The bounds, inf and sup of {C ≤ C_min + Δ}; NaN where that set reaches
        the outer edge of the pieces, or at a jump it stops at.
    status : Status
        OK, MODEL_JUMP or FIT_FAILED; reaching an outer edge is not counted
        here (:attr:`open_low`, :attr:`open_high`): it is BOUND_AT_LIMIT when
        that edge is a kT limit.
    open_low, open_high : bool
        Whether the set reaches the lower / upper outer edge.
    """

    x_min: float
    c_min: float
    x_lo: float
    x_hi: float
    status: Status
    open_low: bool = False
    open_high: bool = False

    @classmethod
    def failed(cls) -> PieceFit:
        """A fit whose search did not converge: every value NaN."""
        nan = math.nan
        return cls(nan, nan, nan, nan, Status.FIT_FAILED)

    def kt(self) -> np.ndarray:
        """[kT_lo, kT_fit, kT_hi] in keV (NaN where unknown)."""
        return np.exp([self.x_lo, self.x_min, self.x_hi])


def fit_pieces(
    stat: Callable[[float], float],
    pieces: Sequence[tuple[float, float]],
    delta: float,
    *,
    jump_tolerance: float = JUMP_TOLERANCE,
) -> PieceFit:
    """Best fit and bounds of *stat* over *pieces* (:class:`xrmod.status.Status`'s definition).

    Every piece is minimised (bounded Brent, and the values at its two
    edges); the lowest is the best fit (a piece's minimum may be its edge: at
    a jump, MODEL_JUMP). A jump between the outermost pieces that reach the
    target is harmless when C ≤ target on both of its sides, else S is split
    there (MODEL_JUMP). The bounds are brentq crossings between the minimum of
    the outermost pieces that reach the target and their outer edges.

    Parameters
    ----------
    stat : callable
        x = ln kT → the profiled statistic (+inf where the model cannot
        describe the data).
    pieces : sequence of (float, float)
        (a, b) of consecutive smooth pieces (:func:`smooth_pieces`).
    delta : float
        Δstat of the bounds.
    jump_tolerance : float
        A best fit within this of C at a jump of its piece sits at that jump
        (:data:`xrmod.status.JUMP_TOLERANCE`: the resolution of the statistic).
    """
    minima = []  # (C, x) of each piece
    for a, b in pieces:
        with np.errstate(invalid="ignore"):  # inf - inf in Brent's steps on an inf piece
            res = optimize.minimize_scalar(
                stat, bounds=(a, b), method="bounded", options={"xatol": XATOL_MINIMUM}
            )
        if not res.success:
            return PieceFit.failed()
        # the lowest of Brent's point and the edges (an edge wins a tie: the statistic is
        # a step function on XSPEC's float32 kT); +inf on a whole piece is no minimum
        c, _, x = min((stat(a), 0, a), (stat(b), 0, b), (float(res.fun), 1, float(res.x)))
        minima.append((c, x))
    best = int(np.argmin([c for c, _ in minima]))
    c_min, x_min = minima[best]
    if not math.isfinite(c_min):
        return PieceFit.failed()
    target = c_min + delta
    reach = [k for k, (c, _) in enumerate(minima) if c <= target]
    first, last = reach[0], reach[-1]
    n = len(pieces)
    codes = [Status.OK]
    level = c_min + jump_tolerance
    for k, near, far in ((best - 1, 0, 1), (best + 1, 1, 0)):  # the jumps of its piece
        if 0 <= k < n and stat(pieces[best][near]) <= level < stat(pieces[k][far]):
            codes.append(Status.MODEL_JUMP)  # the best fit is at a jump
    for k in range(first, last):  # each jump inside the hull of S: bridged, or islands
        bridged = minima[k][0] <= target and minima[k + 1][0] <= target
        if not (bridged and stat(pieces[k][1]) <= target and stat(pieces[k + 1][0]) <= target):
            codes.append(Status.MODEL_JUMP)
    bounds, opens = [], []
    for k, edge, outer in ((first, 0, first == 0), (last, 1, last == n - 1)):
        end = pieces[k][edge]
        x_k = minima[k][1]
        if stat(end) < target:  # S reaches the edge of its outermost piece
            bounds.append(math.nan)
            opens.append(outer)
            if not outer:
                codes.append(Status.MODEL_JUMP)  # ... which is a jump: S stops there
            continue
        opens.append(False)
        root = optimize.brentq(lambda x: stat(x) - target, end, x_k, xtol=XTOL_CROSSING)
        bounds.append(float(root))
    return PieceFit(x_min, c_min, bounds[0], bounds[1], Status.worst(*codes), opens[0], opens[1])
