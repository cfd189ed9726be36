"""Status codes stored per grid point and fit in ``/LIBRARY/status`` and ``status_modified``.

0 means not yet computed, 1 means done, negative values are documented
failures. ``status`` is the status of the point and of its fit with the
original ARF (T1), ``status_modified`` that of the fit with the modified ARF
(T1′); a failure of the point itself (ARF negative or non-finite, no counts,
an unexpected error, not computed) appears in both. A fit that failed holds
NaN in its result columns, never zeros; the definition of a fit and of its
codes is :class:`Status`'s.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["JUMP_TOLERANCE", "SEVERITY", "Status"]

#: A best fit whose statistic is within this of C at a jump sits at that jump
#: (Status rule 4): the resolution of the exact statistic, which XSPEC's float32
#: models make rough at the 10⁻³ level (DESIGN §5): a minimum at a jump's edge
#: can come out a noise dip next to it.
JUMP_TOLERANCE = 1.0e-3


class Status(IntEnum):
    """Outcome of one grid point and fit (stored as int8).

    **The fit** (every engine implements this definition). With
    x = ln kT in [ln kT_min, ln kT_max] (``fit.kt_limits``), C(x) the fit
    statistic with every other free parameter (the norm; a background)
    profiled out, and the model's jumps in kT (``xrmod.models.KT_JUMPS``:
    XSPEC's zbremss jumps by up to 3.4 % at 13.58 keV, less at 0.1358,
    0.5432 and 54.32 keV) splitting the range into smooth pieces:

    1. **Best fit** kT_fit: the global minimum of C over all pieces. A
       piece's minimum may lie at its edge, i.e. at a kT limit or at the left
       or right limit of C at a jump (the model just below or just above it).
    2. target = C_min + ``fit.error_delta``; S = {x : C(x) ≤ target}.
       **kT_lo = inf S, kT_hi = sup S**: the outermost crossings, the interval
       of every kT the data do not reject. Each is a crossing of the target
       inside a piece (C is continuous there), never a point a search
       converged to at a discontinuity.
    3. A bound where S reaches a kT limit is NaN with :attr:`BOUND_AT_LIMIT`.
       (Where the model has no counts in the band at the lower limit, as over
       a hard band at the lowest kT, the native and reference engines'
       lower limit is the lowest kT at which it has: :mod:`xrmod.engines.source`.)
    4. :attr:`MODEL_JUMP` when
       (a) the best fit sits at a jump: C at the jump (its limit from the
       best fit's side) is within :data:`JUMP_TOLERANCE` of C_min and C
       across the jump is not; kT_fit is that jump's kT, or next to it by
       less than the model resolves (a C flat through the jump is not at it); or
       (b) S ends at a jump that the piece beyond does not continue: S split
       into islands by a jump (kT_lo and kT_hi are then the bounds of its
       hull, both finite), or a bound of S that stops at a jump (that bound
       NaN, never a zero-width interval).
       A jump with C ≤ target on both sides lies inside S and is harmless.
    5. :attr:`FIT_FAILED` when a search does not converge: every column NaN.

    kT_fit is stored for BOUND_AT_LIMIT and MODEL_JUMP (it is the global
    minimum); a NaN column is the only unknown. A fit that meets several of
    these gets the most severe (:meth:`worst`, :data:`SEVERITY`): ERROR <
    FIT_FAILED < MODEL_JUMP < BOUND_AT_LIMIT < OK.

    The statistic of one smooth piece is taken as unimodal (in practice it
    is: C-stat in ln kT away from jumps). The native engine searches the
    pieces outwards from the one holding the true temperature and stops at
    the first piece whose near edge is above the target and whose C rises
    away from it; the reference engine minimises every piece.
    """

    NOT_COMPUTED = 0
    OK = 1
    #: The modified ARF has a negative value somewhere (never clipped).
    ARF_NEGATIVE = -1
    #: The modified ARF has a NaN or infinite value somewhere.
    ARF_NONFINITE = -2
    #: A fit did not converge.
    FIT_FAILED = -3
    #: An error bound reached the fit's kT limit and is not a real bound.
    BOUND_AT_LIMIT = -4
    #: The simulated spectrum has no counts in the band.
    NO_COUNTS = -5
    #: The fit meets a jump of the source model in kT (the class docstring, rule 4).
    MODEL_JUMP = -6
    #: Any other exception while computing the point (see the rank log).
    ERROR = -10

    @property
    def description(self) -> str:
        """One line saying what the code means."""
        return _DESCRIPTIONS[self]

    @staticmethod
    def worst(*codes: Status) -> Status:
        """The most severe of one fit's outcomes, in the order of :data:`SEVERITY`.

        The one rule every engine applies when a fit meets several cases of
        the class docstring (e.g. a bound at a limit and a jump).
        """
        return min(codes, key=SEVERITY.index)


_DESCRIPTIONS = {
    Status.NOT_COMPUTED: "not yet computed",
    Status.OK: "computed",
    Status.ARF_NEGATIVE: "the modified ARF is negative somewhere",
    Status.ARF_NONFINITE: "the modified ARF is NaN or infinite somewhere",
    Status.FIT_FAILED: "a fit did not converge",
    Status.BOUND_AT_LIMIT: "an error bound reached the kT fit limit",
    Status.NO_COUNTS: "no counts in the fit band",
    Status.MODEL_JUMP: "the fit meets a jump of the source model in kT (see the docs)",
    Status.ERROR: "unexpected error (see the rank log)",
}

#: Outcomes of one fit, most severe first: the order in which :meth:`Status.worst` picks.
SEVERITY = (Status.ERROR, Status.FIT_FAILED, Status.MODEL_JUMP, Status.BOUND_AT_LIMIT, Status.OK)
