# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Batch ARF modification kernels.

Three layers, as in scikit-learn's ``sklearn/_loss``:

1. ``cdef inline ... noexcept nogil`` per-element factors F with
   A'(E) = A(E) * F(E);
2. one ``def`` kernel per family: a ``nogil`` loop over typed memoryviews that
   evaluates n parameter sets over all nE energies into a caller-allocated
   ``out[n, nE]`` and, in the same loop, the status of every parameter set;
3. the Python wrapper ``xrmod.modifiers.ModifierFamily.apply``, which
   validates the parameter values, broadcasts scalars, converts to
   contiguous float64 and allocates.

Every kernel checks its shapes before its loop (``check_shapes``,
``check_parameter``): arf and every row of out have one value per energy,
every parameter and status one per row of out, or a ValueError names the
argument and both shapes; nothing is read or written out of bounds.
Inputs are ``const`` memoryviews so read-only arrays are accepted.  E is the
energy-bin mid-point in keV.  Nothing is clipped: status[i] is
``ARF_NONFINITE`` (-2) if any out[i, :] is NaN or infinite (this takes
precedence), else ``ARF_NEGATIVE`` (-1) if any value is < 0, else ``OK`` (1),
the codes of ``xrmod.status.Status``.
"""

from libc.math cimport INFINITY, exp, fabs, isfinite, log, pow

# Status codes written by the kernels: the values of xrmod.status.Status.
cdef enum:
    STATUS_OK = 1
    STATUS_ARF_NEGATIVE = -1
    STATUS_ARF_NONFINITE = -2

#: Status codes the kernels write (the values of xrmod.status.Status).
STATUS_CODES = {
    "OK": STATUS_OK,
    "ARF_NEGATIVE": STATUS_ARF_NEGATIVE,
    "ARF_NONFINITE": STATUS_ARF_NONFINITE,
}


# ---------------------------------------------------------------- layer 1 ---

cdef inline double gaussian_factor(double e, double mu, double inv_two_sigma2,
                                   double amp, double cutoff) noexcept nogil:
    """1 + amp * exp(-(e - mu)**2 / (2 * sigma**2)), given 1 / (2 sigma**2).

    Where the exponent's argument exceeds ``cutoff`` (see
    ``gaussian_cutoff``) the result is exactly 1.0 and exp is skipped.
    """
    cdef double d = e - mu
    cdef double x = (d * d) * inv_two_sigma2
    if x > cutoff:
        return 1.0
    return 1.0 + amp * exp(-x)


cdef inline double gaussian_cutoff(double amp) noexcept nogil:
    """x beyond which |amp| * exp(-x) < 2**-54, so 1 + amp * exp(-x) == 1.0.

    log|amp| + 38 (e**-38 = 3.1e-17 < 2**-54 = 5.6e-17); rounding to nearest
    then gives exactly 1.0, the value the full formula gives.  Non-finite amp
    never reaches here (the wrapper rejects it); amp = 0 gives -inf (always 1).
    """
    if amp == 0.0:
        return -INFINITY
    return log(fabs(amp)) + 38.0


cdef inline double tilt_factor(double e, double index, double pivot) noexcept nogil:
    """(e / pivot)**index."""
    return pow(e / pivot, index)


cdef inline double linear_factor(double e, double slope, double pivot) noexcept nogil:
    """1 + slope * (e - pivot)."""
    return 1.0 + slope * (e - pivot)


cdef inline double logistic(double x) noexcept nogil:
    """1 / (1 + exp(-x)), split by sign so exp never overflows."""
    cdef double t
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    t = exp(x)
    return t / (1.0 + t)


cdef inline double edge_factor(double e, double energy, double depth,
                               double width) noexcept nogil:
    """1 + depth / (1 + exp(-(e - energy) / width))."""
    return 1.0 + depth * logistic((e - energy) / width)


cdef inline signed char _status(bint nonfinite, bint negative) noexcept nogil:
    if nonfinite:
        return STATUS_ARF_NONFINITE
    if negative:
        return STATUS_ARF_NEGATIVE
    return STATUS_OK


cdef int check_shapes(str kernel, const double[::1] energy, const double[::1] arf,
                      double[:, ::1] out, signed char[::1] status) except -1:
    """Raise ValueError unless arf, out and status fit energy and each other.

    The kernels read ``energy[j]``, ``arf[j]`` for every column j of out and
    write ``status[i]`` for every row i: this keeps every index in bounds.
    """
    cdef Py_ssize_t ne = energy.shape[0]
    if arf.shape[0] != ne:
        raise ValueError(
            f"{kernel}: arf has shape ({arf.shape[0]},) but energy has shape ({ne},)"
        )
    if out.shape[1] != ne:
        raise ValueError(
            f"{kernel}: out has shape ({out.shape[0]}, {out.shape[1]}) but energy has shape "
            f"({ne},) (out needs one column per energy)"
        )
    if status.shape[0] != out.shape[0]:
        raise ValueError(
            f"{kernel}: status has shape ({status.shape[0]},) but out has shape "
            f"({out.shape[0]}, {ne}) (one status per row of out)"
        )
    return 0


cdef int check_parameter(str kernel, str name, const double[::1] values,
                         double[:, ::1] out) except -1:
    """Raise ValueError unless a parameter has one value per row of out."""
    if values.shape[0] != out.shape[0]:
        raise ValueError(
            f"{kernel}: {name} has shape ({values.shape[0]},) but out has shape "
            f"({out.shape[0]}, {out.shape[1]}) (one {name} per row of out)"
        )
    return 0


# ---------------------------------------------------------------- layer 2 ---

def gaussian(
    const double[::1] energy not None,  # IN (nE,) bin mid-points, keV
    const double[::1] arf not None,     # IN (nE,) original ARF A(E)
    const double[::1] mu not None,      # IN (n,) keV
    const double[::1] sigma not None,   # IN (n,) keV, > 0
    const double[::1] amp not None,     # IN (n,)
    double[:, ::1] out not None,        # OUT (n, nE) A'(E)
    signed char[::1] status not None,   # OUT (n,) Status codes
):
    """Gaussian bump or dip, for n parameter sets at once.

    A'(E) = A(E) * (1 + amp * exp(-(E - mu)**2 / (2 * sigma**2)))

    sigma is the standard deviation of the Gaussian (hence the 2 in the
    exponent).  Fills ``out[i, j]`` = A'(energy[j]) for parameter set i and
    ``status[i]``; a shape that does not fit raises ValueError.  Where
    |amp| * exp(-x) < 2**-54 the bracket rounds to exactly 1, so exp is
    skipped there (same result, 1.7x faster for sigma <~ 1 keV).
    """
    cdef Py_ssize_t n = out.shape[0], ne = out.shape[1], i, j
    cdef double m, c, a, cut, v
    cdef bint nonfinite, negative
    check_shapes("gaussian", energy, arf, out, status)
    check_parameter("gaussian", "mu", mu, out)
    check_parameter("gaussian", "sigma", sigma, out)
    check_parameter("gaussian", "amp", amp, out)
    with nogil:
        for i in range(n):
            m = mu[i]
            c = 1.0 / (2.0 * sigma[i] * sigma[i])
            a = amp[i]
            cut = gaussian_cutoff(a)
            nonfinite = False
            negative = False
            for j in range(ne):
                v = arf[j] * gaussian_factor(energy[j], m, c, a, cut)
                out[i, j] = v
                nonfinite |= not isfinite(v)
                negative |= v < 0.0
            status[i] = _status(nonfinite, negative)


def tilt(
    const double[::1] energy not None,  # IN (nE,) bin mid-points, keV
    const double[::1] arf not None,     # IN (nE,) original ARF A(E)
    const double[::1] index not None,   # IN (n,) power-law index
    const double[::1] pivot not None,   # IN (n,) keV, > 0
    double[:, ::1] out not None,        # OUT (n, nE) A'(E)
    signed char[::1] status not None,   # OUT (n,) Status codes
):
    """Power-law (log-linear) tilt about a pivot energy, for n parameter sets.

    A'(E) = A(E) * (E / pivot)**index

    The usual cross-calibration ratio form: log A' - log A is linear in log E
    and zero at the pivot.  Fills ``out`` and ``status`` as ``gaussian`` does.
    """
    cdef Py_ssize_t n = out.shape[0], ne = out.shape[1], i, j
    cdef double g, p, v
    cdef bint nonfinite, negative
    check_shapes("tilt", energy, arf, out, status)
    check_parameter("tilt", "index", index, out)
    check_parameter("tilt", "pivot", pivot, out)
    with nogil:
        for i in range(n):
            g = index[i]
            p = pivot[i]
            nonfinite = False
            negative = False
            for j in range(ne):
                v = arf[j] * tilt_factor(energy[j], g, p)
                out[i, j] = v
                nonfinite |= not isfinite(v)
                negative |= v < 0.0
            status[i] = _status(nonfinite, negative)


def linear(
    const double[::1] energy not None,  # IN (nE,) bin mid-points, keV
    const double[::1] arf not None,     # IN (nE,) original ARF A(E)
    const double[::1] slope not None,   # IN (n,) 1/keV
    const double[::1] pivot not None,   # IN (n,) keV
    double[:, ::1] out not None,        # OUT (n, nE) A'(E)
    signed char[::1] status not None,   # OUT (n,) Status codes
):
    """Linear tilt about a pivot energy, for n parameter sets.

    A'(E) = A(E) * (1 + slope * (E - pivot))

    slope is in 1/keV.  The factor goes negative for large enough |E - pivot|;
    that is reported as ARF_NEGATIVE, never clipped.
    """
    cdef Py_ssize_t n = out.shape[0], ne = out.shape[1], i, j
    cdef double s, p, v
    cdef bint nonfinite, negative
    check_shapes("linear", energy, arf, out, status)
    check_parameter("linear", "slope", slope, out)
    check_parameter("linear", "pivot", pivot, out)
    with nogil:
        for i in range(n):
            s = slope[i]
            p = pivot[i]
            nonfinite = False
            negative = False
            for j in range(ne):
                v = arf[j] * linear_factor(energy[j], s, p)
                out[i, j] = v
                nonfinite |= not isfinite(v)
                negative |= v < 0.0
            status[i] = _status(nonfinite, negative)


def edge(
    const double[::1] energy not None,  # IN (nE,) bin mid-points, keV
    const double[::1] arf not None,     # IN (nE,) original ARF A(E)
    const double[::1] edge_energy not None,  # IN (n,) keV, the "energy" parameter
    const double[::1] depth not None,   # IN (n,) fractional step
    const double[::1] width not None,   # IN (n,) keV, > 0
    double[:, ::1] out not None,        # OUT (n, nE) A'(E)
    signed char[::1] status not None,   # OUT (n,) Status codes
):
    """Smoothed step of fractional depth above an edge energy, for n sets.

    A'(E) = A(E) * (1 + depth / (1 + exp(-(E - energy) / width)))

    The logistic is evaluated as 1/(1+exp(-x)) for x >= 0 and
    exp(x)/(1+exp(x)) for x < 0, which never overflows.  depth < 0 is a drop
    (e.g. a mis-modelled absorption edge); depth < -1 makes A' negative above
    the edge, which is reported as ARF_NEGATIVE.
    """
    cdef Py_ssize_t n = out.shape[0], ne = out.shape[1], i, j
    cdef double e0, d, w, v
    cdef bint nonfinite, negative
    check_shapes("edge", energy, arf, out, status)
    check_parameter("edge", "edge_energy", edge_energy, out)
    check_parameter("edge", "depth", depth, out)
    check_parameter("edge", "width", width, out)
    with nogil:
        for i in range(n):
            e0 = edge_energy[i]
            d = depth[i]
            w = width[i]
            nonfinite = False
            negative = False
            for j in range(ne):
                v = arf[j] * edge_factor(energy[j], e0, d, w)
                out[i, j] = v
                nonfinite |= not isfinite(v)
                negative |= v < 0.0
            status[i] = _status(nonfinite, negative)
