"""Status codes stored per grid point in ``/LIBRARY/status``.

0 means not yet computed, 1 means done, negative values are documented
failures. A failed point holds NaN in every result column, never zeros.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Status"]


class Status(IntEnum):
    """Outcome of one grid point (stored as int8)."""

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
    #: Any other exception while computing the point (see the rank log).
    ERROR = -10

    @property
    def description(self) -> str:
        """One line saying what the code means."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Status.NOT_COMPUTED: "not yet computed",
    Status.OK: "computed",
    Status.ARF_NEGATIVE: "the modified ARF is negative somewhere",
    Status.ARF_NONFINITE: "the modified ARF is NaN or infinite somewhere",
    Status.FIT_FAILED: "a fit did not converge",
    Status.BOUND_AT_LIMIT: "an error bound reached the kT fit limit",
    Status.NO_COUNTS: "no counts in the fit band",
    Status.ERROR: "unexpected error (see the rank log)",
}
