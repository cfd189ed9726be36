# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Grid indexing kernels: flat index <-> multi-index, work-unit bounds.

All integers are int64 and every array loop runs without the GIL.  The
Python wrapper ``xrmod.grid.Grid`` validates the inputs and allocates the
outputs; the kernels do not raise (nothing can raise in a ``nogil`` loop)
but return the position of the first out-of-range entry, or -1.

Grid points are laid out in C order over (N1, ..., Nd, [R], NT): theta (the
d modifier axes) varies slowest, the temperature fastest, so the P = R * NT
points of one theta form the contiguous flat range [theta * P, (theta+1) * P).
A work unit is one theta with all its points or, with ``max_points`` = m,
one of the ceil(P / m) consecutive chunks of at most m of its points (never
crossing theta).  Unit k's bounds follow from k in O(1), so a scheduler can
hand out bare unit numbers from a shared counter.
"""

from libc.stdint cimport int64_t


# ---------------------------------------------------------------- layer 1 ---

cdef inline int64_t chunks_per_theta(int64_t points_per_theta,
                                     int64_t max_points) noexcept nogil:
    """ceil(P / m): the number of units one theta splits into (m >= 1)."""
    return (points_per_theta + max_points - 1) // max_points


cdef inline void unit_bounds_c(int64_t k, int64_t points_per_theta,
                               int64_t max_points, int64_t chunks,
                               int64_t *theta, int64_t *start,
                               int64_t *stop) noexcept nogil:
    """Bounds of unit k: theta = k // c, start = theta*P + (k % c)*m."""
    cdef int64_t j, end
    theta[0] = k // chunks
    j = k - theta[0] * chunks
    start[0] = theta[0] * points_per_theta + j * max_points
    end = (theta[0] + 1) * points_per_theta
    stop[0] = start[0] + max_points
    if stop[0] > end:
        stop[0] = end


# ---------------------------------------------------------------- layer 2 ---

def ravel_multi_index(
    const int64_t[:, ::1] multi,   # IN (n, d) multi-indices
    const int64_t[::1] shape,      # IN (d,) grid shape
    int64_t[::1] out,              # OUT (n,) flat C-order indices
):
    """Flat C-order index of each row of ``multi``.

    out[i] = (((multi[i, 0] * shape[1] + multi[i, 1]) * shape[2] + ...)

    Returns -1, or the first row with an entry outside [0, shape[k]); rows
    from that one on are not written.
    """
    cdef Py_ssize_t n = multi.shape[0], d = multi.shape[1], i, k
    cdef int64_t f, m
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            f = 0
            for k in range(d):
                m = multi[i, k]
                if m < 0 or m >= shape[k]:
                    bad = i
                    break
                f = f * shape[k] + m
            if bad >= 0:
                break
            out[i] = f
    return bad


def unravel_index(
    const int64_t[::1] flat,       # IN (n,) flat C-order indices
    const int64_t[::1] shape,      # IN (d,) grid shape
    int64_t[:, ::1] out,           # OUT (n, d) multi-indices
):
    """Multi-index of each flat C-order index (the inverse of ravel).

    out[i, d-1] = flat[i] % shape[d-1], then divide and repeat leftwards.

    Returns -1, or the first position with flat outside [0, prod(shape));
    positions from that one on are not written.
    """
    cdef Py_ssize_t n = flat.shape[0], d = shape.shape[0], i, k
    cdef int64_t f, size = 1
    cdef Py_ssize_t bad = -1
    with nogil:
        for k in range(d):
            size *= shape[k]
        for i in range(n):
            f = flat[i]
            if f < 0 or f >= size:
                bad = i
                break
            for k in range(d - 1, -1, -1):
                out[i, k] = f % shape[k]
                f = f // shape[k]
    return bad


def n_units(int64_t n_theta, int64_t points_per_theta, int64_t max_points):
    """Number of work units: n_theta * ceil(P / m) (m >= 1; m >= P: n_theta)."""
    return n_theta * chunks_per_theta(points_per_theta, max_points)


def unit_bounds(int64_t k, int64_t points_per_theta, int64_t max_points):
    """(theta, start, stop) of unit k in O(1); see the module docstring.

    Unit k of c = ceil(P / m) per theta: theta = k // c,
    start = theta * P + (k % c) * m, stop = min(start + m, (theta + 1) * P).
    The caller checks 0 <= k < n_units and m >= 1.
    """
    cdef int64_t theta, start, stop
    unit_bounds_c(k, points_per_theta, max_points,
                  chunks_per_theta(points_per_theta, max_points),
                  &theta, &start, &stop)
    return theta, start, stop


def units(
    const int64_t[::1] k,          # IN (n,) unit numbers
    int64_t points_per_theta,      # IN P = R * NT
    int64_t max_points,            # IN m >= 1 (m >= P: one unit per theta)
    int64_t[:, ::1] out,           # OUT (n, 3) [theta, start, stop)
):
    """Bounds of many units at once: row i is ``unit_bounds(k[i], P, m)``."""
    cdef Py_ssize_t n = k.shape[0], i
    cdef int64_t chunks = chunks_per_theta(points_per_theta, max_points)
    with nogil:
        for i in range(n):
            unit_bounds_c(k[i], points_per_theta, max_points, chunks,
                          &out[i, 0], &out[i, 1], &out[i, 2])
