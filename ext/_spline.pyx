# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Tensor-product cubic B-spline evaluation: the emulator's hot kernel.

A spline over d axes has, on axis a, the knot vector t_a (n_a + 4 knots,
cubic) and n_a coefficients; the coefficients of all the spline's outputs
share the knots and are stored C-ordered as ``coef[q, i_0, ..., i_{d-1}]``,
flattened to ``coef[q, :]``. At a point x only 4 basis functions per axis are
non-zero, so one value is a contraction of a 4**d block of coefficients:
the block is gathered four contiguous values at a time along the last axis
(dot product with that axis' four basis values), then reduced axis by axis
towards the first. The basis values and their derivatives come from de Boor's
recursion (Piegl & Tiller, *The NURBS Book*, A2.2 and A2.3).

``evaluate`` fills the values of every output at n points and, when asked,
their d partial derivatives; scipy's ``NdBSpline`` computes the same numbers
(the tests compare them) about ten times slower. The Python wrapper
``xrmod.analysis.emulator`` checks that points lie inside the knots' span;
the kernel itself clamps to the end intervals and never reads out of bounds.
"""

from libc.stdlib cimport free, malloc

# Largest number of axes (the per-point arrays below are this long).
cdef enum:
    MAX_AXES = 10

#: Largest number of axes ``evaluate`` takes.
MAX_DIMENSIONS = MAX_AXES


# ---------------------------------------------------------------- layer 1 ---

cdef inline Py_ssize_t find_interval(const double *t, Py_ssize_t n, double x) noexcept nogil:
    """m with t[m] <= x < t[m + 1], m in [3, n - 1] (cubic, n coefficients).

    Points below t[3] take the first interval and points at or beyond t[n]
    the last, so that the right end of the span belongs to the last interval.
    """
    cdef Py_ssize_t lo = 3, hi = n - 1, mid
    if x >= t[hi]:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if x < t[mid]:
            hi = mid
        else:
            lo = mid
    return lo


cdef inline void basis(const double *t, Py_ssize_t m, double x,
                       double *value, double *slope) noexcept nogil:
    """The four cubic basis functions B_{m-3..m}(x) and their derivatives.

    ``value[r]`` = B_{m-3+r}(x); ``slope[r]`` = B'_{m-3+r}(x), from the
    quadratic basis of the recursion's second step:
    B'_{i,3} = 3 (B_{i,2} / (t_{i+3} - t_i) - B_{i+1,2} / (t_{i+4} - t_{i+1})).
    """
    cdef double left[4]
    cdef double right[4]
    cdef double quad[3]
    cdef double saved, temp, a, b
    cdef int j, r
    value[0] = 1.0
    for j in range(1, 4):
        left[j] = x - t[m + 1 - j]
        right[j] = t[m + j] - x
        saved = 0.0
        for r in range(j):
            temp = value[r] / (right[r + 1] + left[j - r])
            value[r] = saved + right[r + 1] * temp
            saved = left[j - r] * temp
        value[j] = saved
        if j == 2:
            quad[0] = value[0]
            quad[1] = value[1]
            quad[2] = value[2]
    for r in range(4):
        a = quad[r - 1] / (t[m + r] - t[m - 3 + r]) if r >= 1 else 0.0
        b = quad[r] / (t[m + r + 1] - t[m - 2 + r]) if r <= 2 else 0.0
        slope[r] = 3.0 * (a - b)


cdef double contract(const double *coef, const Py_ssize_t *offset, int d,
                     const double **weight, double *work) noexcept nogil:
    """Sum over the 4**d block at *coef* of coefficient x product of weights.

    ``weight[a]`` holds axis a's four weights; ``offset`` the 4**(d - 1)
    positions, relative to *coef*, of the block's runs of four along the
    last axis (whose step is 1), in the C order of the other axes' indices.
    *work* has room for 4**(d - 1) values.
    """
    cdef Py_ssize_t n = 1, idx, k
    cdef int a
    cdef const double *w = weight[d - 1]
    cdef const double *p
    for a in range(d - 1):
        n *= 4
    for idx in range(n):
        p = coef + offset[idx]
        work[idx] = w[0] * p[0] + w[1] * p[1] + w[2] * p[2] + w[3] * p[3]
    for a in range(d - 2, -1, -1):
        n >>= 2
        w = weight[a]
        for k in range(n):
            work[k] = (w[0] * work[4 * k] + w[1] * work[4 * k + 1]
                       + w[2] * work[4 * k + 2] + w[3] * work[4 * k + 3])
    return work[0]


cdef inline double dot4(const double *w, const double *p) noexcept nogil:
    return w[0] * p[0] + w[1] * p[1] + w[2] * p[2] + w[3] * p[3]


cdef void contract_gradient(const double *coef, const Py_ssize_t *offset, int d,
                            const double **value_weight, const double **slope_weight,
                            double *work, double *out) noexcept nogil:
    """The value and the d partial derivatives of one output, in one pass.

    As ``contract``, but each reduction step also reduces the partial
    derivatives found so far and starts the one along its own axis (the
    value so far reduced with the axis' derivative weights): about twice the
    work of one value, where d + 1 separate contractions cost d + 1 times it.
    ``out[0]`` is the value, ``out[1 + a]`` the partial along axis a; *work*
    has room for (d + 1) * 4**(d - 1) values.
    """
    cdef Py_ssize_t size = 1, n, idx, k
    cdef int a, b
    cdef const double *p
    cdef const double *w
    cdef double *acc
    for a in range(d - 1):
        size *= 4
    for idx in range(size):  # slot 0: the value; slot 1 + a: the partial along axis a
        p = coef + offset[idx]
        work[idx] = dot4(value_weight[d - 1], p)
        work[d * size + idx] = dot4(slope_weight[d - 1], p)
    n = size
    for a in range(d - 2, -1, -1):
        n >>= 2
        for b in range(a + 1, d):
            acc = work + (1 + b) * size
            w = value_weight[a]
            for k in range(n):
                acc[k] = dot4(w, &acc[4 * k])
        acc = work + (1 + a) * size
        for k in range(n):
            acc[k] = dot4(slope_weight[a], &work[4 * k])
            work[k] = dot4(value_weight[a], &work[4 * k])
    for a in range(d + 1):
        out[a] = work[a * size]


cdef void block_offsets(const Py_ssize_t *stride, int d, Py_ssize_t *offset) noexcept nogil:
    """``offset[idx]`` = sum over axes a < d - 1 of (digit a of idx in base 4) * stride[a].

    The digits are read with axis 0 the most significant, the order in which
    ``contract`` reduces the block.
    """
    cdef Py_ssize_t n = 1, idx, rem, off
    cdef int a
    for a in range(d - 1):
        n *= 4
    for idx in range(n):
        off = 0
        rem = idx
        for a in range(d - 2, -1, -1):
            off += (rem & 3) * stride[a]
            rem >>= 2
        offset[idx] = off


# ---------------------------------------------------------------- layer 2 ---

def evaluate(
    const double[:, ::1] x not None,          # IN (n, d) points
    const double[::1] knots not None,         # IN every axis' knots, one after the other
    const Py_ssize_t[::1] knot_start not None,  # IN (d + 1,) axis a's knots: [start[a], start[a+1])
    const double[:, ::1] coef not None,       # IN (n_out, prod(n_a)) C-ordered coefficients
    double[:, ::1] value not None,            # OUT (n, n_out)
    double[:, :, ::1] gradient = None,        # OUT (n, n_out, d) partial derivatives, or None
):
    """Values (and partial derivatives) of n_out cubic tensor splines at n points.

    Axis a has ``knot_start[a + 1] - knot_start[a]`` knots, hence that
    number minus 4 coefficients; their product must be ``coef.shape[1]``.
    A shape that does not fit raises ValueError before anything is read.
    """
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], n_out = coef.shape[0]
    cdef Py_ssize_t i, q, total = 1, base
    cdef int a, b
    cdef Py_ssize_t n_coef[MAX_AXES]
    cdef Py_ssize_t stride[MAX_AXES]
    cdef Py_ssize_t first[MAX_AXES]
    cdef double val[MAX_AXES][4]
    cdef double der[MAX_AXES][4]
    cdef const double *weight[MAX_AXES]
    cdef const double *slope[MAX_AXES]
    cdef double both[MAX_AXES + 1]
    cdef const double *t
    cdef double *work
    cdef Py_ssize_t *offset
    cdef bint grad = gradient is not None
    _check(x, knots, knot_start, coef, value, gradient)
    for a in range(d):
        n_coef[a] = knot_start[a + 1] - knot_start[a] - 4
    for a in range(d - 1, -1, -1):
        stride[a] = total
        total *= n_coef[a]
    work = <double *> malloc(sizeof(double) * (d + 1) * (1 << (2 * (d - 1))))
    offset = <Py_ssize_t *> malloc(sizeof(Py_ssize_t) * (1 << (2 * (d - 1))))
    if work == NULL or offset == NULL:
        free(work)
        free(offset)
        raise MemoryError()
    try:
        with nogil:
            block_offsets(stride, d, offset)
            for i in range(n):
                base = 0
                for a in range(d):
                    t = &knots[knot_start[a]]
                    first[a] = find_interval(t, n_coef[a], x[i, a])
                    basis(t, first[a], x[i, a], val[a], der[a])
                    base += (first[a] - 3) * stride[a]
                    weight[a] = val[a]
                    slope[a] = der[a]
                for q in range(n_out):
                    if not grad:
                        value[i, q] = contract(&coef[q, base], offset, d, weight, work)
                        continue
                    contract_gradient(&coef[q, base], offset, d, weight, slope, work, both)
                    value[i, q] = both[0]
                    for b in range(d):
                        gradient[i, q, b] = both[1 + b]
    finally:
        free(work)
        free(offset)


cdef int _check(const double[:, ::1] x, const double[::1] knots,
                const Py_ssize_t[::1] knot_start, const double[:, ::1] coef,
                double[:, ::1] value, double[:, :, ::1] gradient) except -1:
    """Raise ValueError unless every array fits the others (no read out of bounds)."""
    cdef Py_ssize_t d = x.shape[1], n = x.shape[0], total = 1, a, k
    if d < 1 or d > MAX_AXES:
        raise ValueError(f"evaluate: x has {d} columns; 1 to {MAX_AXES} axes are supported")
    if knot_start.shape[0] != d + 1:
        raise ValueError(
            f"evaluate: knot_start has shape ({knot_start.shape[0]},) but x has {d} columns "
            f"(knot_start needs {d + 1} entries)"
        )
    if knot_start[0] < 0 or knot_start[d] > knots.shape[0]:
        raise ValueError(
            f"evaluate: knot_start spans [{knot_start[0]}, {knot_start[d]}) but knots has "
            f"{knots.shape[0]} entries"
        )
    for a in range(d):
        k = knot_start[a + 1] - knot_start[a]
        if k < 8:
            raise ValueError(f"evaluate: axis {a} has {k} knots; a cubic needs at least 8")
        total *= k - 4
    if coef.shape[1] != total:
        raise ValueError(
            f"evaluate: coef has shape ({coef.shape[0]}, {coef.shape[1]}) but the knots "
            f"give {total} coefficients per output"
        )
    if value.shape[0] != n or value.shape[1] != coef.shape[0]:
        raise ValueError(
            f"evaluate: value has shape ({value.shape[0]}, {value.shape[1]}), "
            f"expected ({n}, {coef.shape[0]})"
        )
    if gradient is not None and (
        gradient.shape[0] != n or gradient.shape[1] != coef.shape[0] or gradient.shape[2] != d
    ):
        raise ValueError(
            f"evaluate: gradient has shape ({gradient.shape[0]}, {gradient.shape[1]}, "
            f"{gradient.shape[2]}), expected ({n}, {coef.shape[0]}, {d})"
        )
    return 0
