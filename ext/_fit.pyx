# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fold, C-statistic and fit kernels of the native engine.

Three layers, as in ``_modify.pyx`` (and scikit-learn's ``sklearn/_loss``):

1. ``cdef inline ... noexcept nogil`` helpers: Hermite pieces, one evaluation
   of the profiled statistic and its derivatives, the safeguarded minimiser
   and root finder;
2. ``def`` kernels over typed memoryviews with ``nogil`` loops and
   caller-allocated outputs: :func:`fold` (its loop in ``_fold.h``, C for an
   AVX2 clone), :func:`correction`, :func:`cstat`, and :class:`Tables` with
   its ``profile`` and ``fit``;
3. the Python wrapper, :class:`xrmod.engines.native.NativeEngine`, which
   builds the tables, allocates and turns codes into :class:`xrmod.status.Status`.

**Model.** For one fit the expected counts per band channel c, for a norm of
1, are f_c(x), x = ln kT, given through tables of ln f_c: one or two
:class:`Table` s whose values add up,

    ln f_c(x) = H[y_c, d_c](x) (+ H[y'_c, d'_c](x)),

where H is the piecewise cubic Hermite interpolant through values y_{j,c}
and x-derivatives d_{j,c} at knots x_j (a knot may appear twice: a break,
where the left and the right pieces end). Each table also carries the same
interpolant of one scalar, ln F with F = Σ_c f_c. Outside its knots a table
is extended linearly (value and slope of the end knot).

**Statistic.** XSPEC's C-statistic (``cstat``, no background),
C = 2 Σ_c [m_c − D_c + D_c ln(D_c / m_c)] with the log term 0 where D_c = 0,
for m = n f and the norm profiled analytically (n = N / F, N = Σ_c D_c), is

    C(x) = 2 [Σ_c D_c ln D_c − N ln N + N ln F(x) − L(x)],  L(x) = Σ_c D_c ln f_c(x).

Because H is linear in its data, L is itself a Hermite interpolant, through
the projections Σ_c D_c y_{j,c} and Σ_c D_c d_{j,c}: a fit computes these two
dot products for each knot it visits (memoised), and every evaluation of C,
C' and C'' afterwards costs O(1). The derivatives are analytic (envelope
theorem: the norm sits at its optimum): C' = 2 [N (ln F)' − L'], C'' likewise.

**With a background** (``background``, ``alpha`` given to ``fit`` and
``profile``): XSPEC's W-statistic, the background expectation of each channel
profiled in closed form (``wstat_channel``) and the norm by safeguarded
Newton steps (``evaluate_wstat``); C' and C'' are then total derivatives
along that profile, and each evaluation is one or two passes over the
channels instead of O(1).

**Fit** (:func:`fit_problem`; the definition is ``xrmod.status.Status``'s).
The model's jumps split the kT range into smooth pieces. The minimum of a
piece is found by a Newton iteration safeguarded by a bracket on the sign of
C' (bisection when a step leaves it, is not convex or does not shrink fast
enough), first in the piece of the starting point, then in the pieces
beyond, outwards, while the next one's near edge is at or below the target
(lowest minimum so far + delta) or C falls away from it; the lowest is the
best fit. The bounds are the crossings of C_min + delta in the outermost
pieces that reach it, between their minimum and their outer edge: Newton
steps on C − C_min − delta from the parabolic guess, kept inside that
bracket, regula falsi (Illinois) as fallback. A search never spans a jump.
A bound beyond the kT limit is NaN with status BOUND_AT_LIMIT; a best fit at
a jump, a jump that splits the set below the target or a bound that stops at
a jump is MODEL_JUMP (that bound NaN); a search that does not converge is
FIT_FAILED with NaN results. Status codes are those of ``xrmod.status.Status``.
"""

from libc.math cimport INFINITY, NAN, exp, fabs, isfinite, log, sqrt
from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc


cdef extern from "_random.h" nogil:
    double xr_poisson_point(const double* mean, double* counts, int64_t n,
                            uint64_t seed, uint64_t flat)


cdef extern from "_fold.h" nogil:
    void xrmod_fold(Py_ssize_t nrow, Py_ssize_t ncol, const int32_t* indptr,
                    const int32_t* indices, const double* data, const double* x,
                    double* out)

# Status codes written by the kernels: the values of xrmod.status.Status.
cdef enum:
    STATUS_OK = 1
    STATUS_FIT_FAILED = -3
    STATUS_BOUND_AT_LIMIT = -4
    STATUS_MODEL_JUMP = -6

#: Status codes the kernels return (the values of xrmod.status.Status).
STATUS_CODES = {
    "OK": STATUS_OK,
    "FIT_FAILED": STATUS_FIT_FAILED,
    "BOUND_AT_LIMIT": STATUS_BOUND_AT_LIMIT,
    "MODEL_JUMP": STATUS_MODEL_JUMP,
}

# Iteration cap of the minimiser and of each bound search.
cdef int MAX_ITER = 200
# Absolute tolerance in x = ln kT of the minimum and of the bounds.
cdef double XTOL_DEFAULT = 1.0e-10
#: Absolute tolerance in x = ln kT of the minimum and of the bounds.
XTOL = XTOL_DEFAULT


# ---------------------------------------------------------------- layer 1 ---

cdef struct Table:
    Py_ssize_t n          # knots
    Py_ssize_t nch        # channels
    const double* x       # (n,) non-decreasing knots
    const double* y       # (n, nch) ln f at the knots
    const double* d       # (n, nch) d ln f / dx at the knots
    const double* sy      # (n,) ln F at the knots
    const double* sd      # (n,) d ln F / dx at the knots
    # memoised projections on the counts (per fit)
    double* py            # (n,) sum_c D_c y[j, c]
    double* pd            # (n,) sum_c D_c d[j, c]
    unsigned char* done   # (n,)


cdef struct Problem:
    Table tables[2]
    int n_tables
    const double* jumps   # (n_jumps,) increasing x where the model jumps
    Py_ssize_t n_jumps
    double jump_offset    # a piece to the right of a jump starts this far above it
    const double* counts  # (nch,)
    double total          # N
    double const_term     # sum D ln D - N ln N
    # with a background (W-stat): NULL bkg means C-stat without background
    const double* bkg     # (nch,) background counts B
    const double* alpha   # (nch,) background scaling: source / background exposure x BACKSCAL
    double* scratch       # (3 nch,) f_c, d ln f_c / dx, d2 ln f_c / dx2 at the current x
    double net            # max(N - sum alpha B, N / 10): first guess of norm x F
    double norm_last      # the last profiled norm of this fit (warm start), NaN at first
    double big_f_last     # F = sum_c f_c where norm_last was found
    long n_eval           # evaluations of the statistic in this fit (diagnostics)


cdef struct Eval:
    double value   # C(x)
    double d1      # C'(x)
    double d2      # C''(x)
    double norm    # profiled norm N / F


cdef inline double dot(const double* a, const double* b, Py_ssize_t n) noexcept nogil:
    """sum a[i] b[i] with four accumulators (float64)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        i += 4
    while i < n:
        s0 += a[i] * b[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline void hermite_basis(double t, double* p) noexcept nogil:
    """The cubic Hermite basis polynomials at t in [0, 1] and their t-derivatives.

    A piece of width h through values y0, y1 and x-slopes d0, d1 is
    p[0] y0 + p[1] h d0 + p[2] y1 + p[3] h d1; its first t-derivative has the
    weights p[4], p[5], -p[4], p[6] and its second p[7], p[8], -p[7], p[9]
    (each t-derivative is h times an x-derivative: the callers divide).
    """
    cdef double t2 = t * t, t3 = t2 * t
    p[0] = 2.0 * t3 - 3.0 * t2 + 1.0
    p[1] = t3 - 2.0 * t2 + t
    p[2] = -2.0 * t3 + 3.0 * t2
    p[3] = t3 - t2
    p[4] = 6.0 * t2 - 6.0 * t
    p[5] = 3.0 * t2 - 4.0 * t + 1.0
    p[6] = 3.0 * t2 - 2.0 * t
    p[7] = 12.0 * t - 6.0
    p[8] = 6.0 * t - 4.0
    p[9] = 6.0 * t - 2.0


cdef inline void hermite(const double* p, double h, double y0, double y1, double d0,
                         double d1, double* v) noexcept nogil:
    """A Hermite piece of width h from its basis p: value, first, second x-derivative."""
    v[0] = p[0] * y0 + p[1] * h * d0 + p[2] * y1 + p[3] * h * d1
    v[1] = p[4] * (y0 - y1) / h + p[5] * d0 + p[6] * d1
    v[2] = p[7] * (y0 - y1) / (h * h) + p[8] * d0 / h + p[9] * d1 / h


cdef inline Py_ssize_t find_piece(const double* x, Py_ssize_t n, double v) noexcept nogil:
    """The j with x[j] <= v < x[j + 1] (largest such j; clamped to [0, n - 2])."""
    cdef Py_ssize_t lo = 0, hi = n - 1, mid
    if v < x[0]:
        return 0
    if v >= x[n - 1]:
        return n - 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[mid] <= v:
            lo = mid
        else:
            hi = mid
    return lo


cdef inline void project(Table* t, const double* counts, Py_ssize_t j) noexcept nogil:
    if not t.done[j]:
        t.py[j] = dot(t.y + j * t.nch, counts, t.nch)
        t.pd[j] = dot(t.d + j * t.nch, counts, t.nch)
        t.done[j] = 1


cdef inline void table_eval(Table* t, const double* counts, double x,
                            double* lnf, double* big_l) noexcept nogil:
    """ln F and L = sum_c D_c ln f_c (value, 1st, 2nd derivative) of one table at x."""
    cdef Py_ssize_t j, n = t.n
    cdef double h
    cdef double p[10]
    if n == 1:
        project(t, counts, 0)
        lnf[0] = t.sy[0]
        lnf[1] = 0.0
        lnf[2] = 0.0
        big_l[0] = t.py[0]
        big_l[1] = 0.0
        big_l[2] = 0.0
        return
    if x < t.x[0] or x > t.x[n - 1]:
        j = 0 if x < t.x[0] else n - 1
        project(t, counts, j)
        h = x - t.x[j]
        lnf[0] = t.sy[j] + h * t.sd[j]
        lnf[1] = t.sd[j]
        lnf[2] = 0.0
        big_l[0] = t.py[j] + h * t.pd[j]
        big_l[1] = t.pd[j]
        big_l[2] = 0.0
        return
    j = find_piece(t.x, n, x)
    h = t.x[j + 1] - t.x[j]
    if not h > 0.0:  # x on the last knot of a zero-width piece
        j -= 1
        h = t.x[j + 1] - t.x[j]
    project(t, counts, j)
    project(t, counts, j + 1)
    hermite_basis((x - t.x[j]) / h, p)
    hermite(p, h, t.sy[j], t.sy[j + 1], t.sd[j], t.sd[j + 1], lnf)
    hermite(p, h, t.py[j], t.py[j + 1], t.pd[j], t.pd[j + 1], big_l)


cdef inline void table_channels(Table* t, double x, double* out) noexcept nogil:
    """Add ln f_c and its first two x-derivatives of one table at x, channel by channel.

    out[0:nch], out[nch:2 nch], out[2 nch:3 nch]; the same pieces as table_eval.
    """
    cdef Py_ssize_t j, c, n = t.n, nch = t.nch
    cdef double h, w0, w1, w2, w3, e0, e1, e2, e3, s0, s1, s2, s3
    cdef double p[10]
    cdef const double* y0
    cdef const double* y1
    cdef const double* d0
    cdef const double* d1
    if n == 1 or x < t.x[0] or x > t.x[n - 1]:
        j = 0 if (n == 1 or x < t.x[0]) else n - 1
        h = 0.0 if n == 1 else x - t.x[j]
        y0 = t.y + j * nch
        d0 = t.d + j * nch
        for c in range(nch):
            out[c] += y0[c] + h * d0[c]
            out[nch + c] += 0.0 if n == 1 else d0[c]
        return
    j = find_piece(t.x, n, x)
    h = t.x[j + 1] - t.x[j]
    if not h > 0.0:
        j -= 1
        h = t.x[j + 1] - t.x[j]
    hermite_basis((x - t.x[j]) / h, p)
    # weights of y0, d0, y1, d1 for the value (w), first (e) and second (s) x-derivative
    w0 = p[0]
    w1 = p[1] * h
    w2 = p[2]
    w3 = p[3] * h
    e0 = p[4] / h
    e1 = p[5]
    e2 = -e0
    e3 = p[6]
    s0 = p[7] / (h * h)
    s1 = p[8] / h
    s2 = -s0
    s3 = p[9] / h
    y0 = t.y + j * nch
    y1 = y0 + nch
    d0 = t.d + j * nch
    d1 = d0 + nch
    for c in range(nch):
        out[c] += w0 * y0[c] + w1 * d0[c] + w2 * y1[c] + w3 * d1[c]
        out[nch + c] += e0 * y0[c] + e1 * d0[c] + e2 * y1[c] + e3 * d1[c]
        out[2 * nch + c] += s0 * y0[c] + s1 * d0[c] + s2 * y1[c] + s3 * d1[c]


cdef inline double wstat_channel(double mu, double s, double b, double a,
                                 double* g, double* h, bint value=True) noexcept nogil:
    """One channel's W-statistic with its background rate profiled out.

    Source-region counts s ~ Poisson(mu + a beta), background-region counts
    b ~ Poisson(beta); beta maximises the likelihood (the positive root of
    a(1+a) beta^2 + [(1+a) mu - a(s+b)] beta - b mu = 0, as XSPEC's W-stat).
    Returns 2 [mu + a beta - s + s ln(s/q) + beta - b + b ln(b/beta)],
    q = mu + a beta, and sets g, h to its first and second mu-derivatives
    (the second through d beta / d mu); with value False, only g and h (no logs).
    """
    cdef double qa = a * (1.0 + a), lin = (1.0 + a) * mu - a * (s + b)
    cdef double root = sqrt(lin * lin + 4.0 * qa * b * mu), beta, q, u, v, w
    if lin <= 0.0:
        beta = (root - lin) / (2.0 * qa)
    elif root + lin > 0.0:
        beta = 2.0 * b * mu / (lin + root)  # the same root without cancellation
    else:
        beta = 0.0
    q = mu + a * beta
    w = mu + a * beta - s + beta - b
    u = 0.0
    if s > 0.0:
        if value:
            w += s * log(s / q)
        u = s / (q * q)
        g[0] = 2.0 * (1.0 - s / q)
    else:
        g[0] = 2.0
    if b > 0.0:
        if value:
            w += b * log(b / beta)
        v = b / (beta * beta)
        h[0] = 2.0 * u * v / (a * a * u + v)
    elif beta > 0.0:
        h[0] = 0.0  # no background counts, beta > 0: w is linear in mu
    else:
        h[0] = 2.0 * u
    return 2.0 * w


# Relative size of the last Newton step in the norm at which the profile is taken.
cdef double NORM_RTOL = 1.0e-5


cdef inline void wstat_sums(Problem* p, double n, double* sums) noexcept nogil:
    """One pass over the channels at norm n: the W-stat and its n- and x-derivatives.

    sums = [W, W_n, W_nn, W_x, W_xx, W_xn] with μ_c = n f_c, w_c' = g_c,
    w_c'' = h_c (wstat_channel), ℓ_c = d ln f_c / dx:
    W_n = Σ g_c f_c, W_nn = Σ h_c f_c², W_x = Σ g_c n f_c ℓ_c,
    W_xx = Σ [h_c (n f_c ℓ_c)² + g_c n f_c (ℓ_c² + ℓ'_c)],
    W_xn = Σ [h_c n f_c² ℓ_c + g_c f_c ℓ_c].
    """
    cdef Py_ssize_t c, nch = p.tables[0].nch
    cdef const double* f = p.scratch
    cdef const double* dl = p.scratch + nch
    cdef const double* d2l = p.scratch + 2 * nch
    cdef double w = 0.0, wn = 0.0, wnn = 0.0, wx = 0.0, wxx = 0.0, wxn = 0.0
    cdef double g, h, fc, l, mx
    for c in range(nch):
        fc = f[c]
        l = dl[c]
        w += wstat_channel(n * fc, p.counts[c], p.bkg[c], p.alpha[c], &g, &h)
        mx = n * fc * l
        wn += g * fc
        wnn += h * fc * fc
        wx += g * mx
        wxx += h * mx * mx + g * n * fc * (l * l + d2l[c])
        wxn += h * fc * mx + g * fc * l
    sums[0] = w
    sums[1] = wn
    sums[2] = wnn
    sums[3] = wx
    sums[4] = wxx
    sums[5] = wxn


cdef inline Eval evaluate_wstat(Problem* p, double x) noexcept nogil:
    """The W-statistic profiled over the background and the norm at x.

    The norm minimises a convex function of n: Newton steps on W_n, kept
    inside a bracket (halving towards 0, doubling upwards). Once a step is
    below NORM_RTOL the profile is taken from that pass, moved to the Newton
    point to second order: W − W_n² / (2 W_nn), W_x + W_xn δ. The total
    derivatives along the profile are C' = W_x and C'' = W_xx − W_xn² / W_nn.
    The norm is 0 (and C' = 0) when W increases from n = 0 (no net source).
    """
    cdef Eval out
    cdef Py_ssize_t c, nch = p.tables[0].nch
    cdef double* f = p.scratch
    cdef double n, n0, nn, lo = 0.0, hi = INFINITY, big_f = 0.0, step
    cdef double sums[6]
    cdef int k, it
    for c in range(3 * nch):
        p.scratch[c] = 0.0
    for k in range(p.n_tables):
        table_channels(&p.tables[k], x, p.scratch)
    for c in range(nch):
        f[c] = exp(f[c])
        big_f += f[c]
    # the norm follows the counts: n F stays near the net counts as x moves
    n0 = p.norm_last * p.big_f_last / big_f if p.norm_last > 0.0 else p.net / big_f
    n = n0
    for it in range(MAX_ITER):
        wstat_sums(p, n, sums)
        if sums[1] > 0.0:
            hi = n
        elif sums[1] < 0.0:
            lo = n
        step = -sums[1] / sums[2] if sums[2] > 0.0 else NAN
        if fabs(step) <= NORM_RTOL * n or sums[1] == 0.0:
            if not isfinite(step):
                step = 0.0
            out.value = sums[0] - 0.5 * sums[1] * sums[1] / sums[2] if step != 0.0 else sums[0]
            out.d1 = sums[3] + sums[5] * step
            out.d2 = sums[4] - sums[5] * sums[5] / sums[2] if sums[2] > 0.0 else sums[4]
            n += step
            break
        nn = n + step
        if not (lo < nn < hi):
            nn = 0.5 * (lo + hi) if isfinite(hi) else 2.0 * n
        if hi <= 1.0e-30 * n0:  # W rises from n = 0: no net source counts
            n = 0.0
            wstat_sums(p, n, sums)
            out.value = sums[0]
            out.d1 = 0.0
            out.d2 = 0.0
            break
        n = nn
    else:
        out.value = NAN
    if n > 0.0:
        p.norm_last = n
        p.big_f_last = big_f
    out.norm = n
    if not isfinite(out.value):
        out.value = INFINITY
        out.d1 = NAN
        out.d2 = NAN
    return out


cdef inline Eval evaluate(Problem* p, double x) noexcept nogil:
    """The profiled statistic at x: value, C', C'' and the norm."""
    p.n_eval += 1
    if p.bkg != NULL:
        return evaluate_wstat(p, x)
    return evaluate_cstat(p, x)


cdef inline Eval evaluate_cstat(Problem* p, double x) noexcept nogil:
    """The profiled C-statistic (no background) at x: value, C', C'' and the norm."""
    cdef Eval out
    cdef double lnf[3]
    cdef double big_l[3]
    cdef double a[3]
    cdef double b[3]
    cdef int k, i
    for i in range(3):
        a[i] = 0.0
        b[i] = 0.0
    for k in range(p.n_tables):
        table_eval(&p.tables[k], p.counts, x, lnf, big_l)
        for i in range(3):
            a[i] += lnf[i]
            b[i] += big_l[i]
    out.value = 2.0 * (p.const_term + p.total * a[0] - b[0])
    out.d1 = 2.0 * (p.total * a[1] - b[1])
    out.d2 = 2.0 * (p.total * a[2] - b[2])
    out.norm = p.total * exp(-a[0])
    if not isfinite(out.value):
        out.value = INFINITY
        out.d1 = NAN
        out.d2 = NAN
    return out


cdef inline double clamp(double x, double lo, double hi) noexcept nogil:
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


cdef int minimise(Problem* p, double x0, double a, double b, double xtol,
                  double* x_out, Eval* at_min) noexcept nogil:
    """Minimise C over [a, b] from x0; returns STATUS_OK or STATUS_FIT_FAILED.

    Keeps a bracket [lo, hi] with C' < 0 at lo and C' > 0 at hi (the ends
    a and b count as bracket ends: a minimum there is a minimum at the
    limit). Takes the Newton step -C'/C'' when C'' > 0, the step stays inside
    the bracket and it is less than half the step before last (as Numerical
    Recipes' ``rtsafe``); otherwise bisects the bracket. A non-finite C'
    moves the point half-way back to the last finite one.
    """
    cdef double lo = a, hi = b, x = clamp(x0, a, b), xn, dx, dxold = b - a
    cdef double last_good = NAN
    cdef Eval e
    cdef int it
    for it in range(MAX_ITER):
        e = evaluate(p, x)
        if not isfinite(e.d1):
            if isfinite(last_good):
                xn = 0.5 * (x + last_good)
            else:
                xn = 0.5 * (lo + hi) if fabs(x - 0.5 * (lo + hi)) > xtol else 0.5 * (lo + x)
            if x < xn:
                lo = x
            else:
                hi = x
            if fabs(xn - x) <= xtol:
                return STATUS_FIT_FAILED
            x = xn
            continue
        last_good = x
        if e.d1 > 0.0:
            hi = x
        elif e.d1 < 0.0:
            lo = x
        else:
            break
        if hi - lo <= xtol:
            break
        xn = NAN
        if e.d2 > 0.0:
            xn = x - e.d1 / e.d2
        if not (lo < xn < hi) or fabs(xn - x) > 0.5 * fabs(dxold):
            xn = 0.5 * (lo + hi)
        dx = xn - x
        dxold = dx
        x = xn
        if fabs(dx) <= xtol:
            break
    else:
        return STATUS_FIT_FAILED
    # a bracket collapsed onto a limit is a minimum at the limit
    if x - a <= xtol and lo == a:
        x = a
    elif b - x <= xtol and hi == b:
        x = b
    at_min[0] = evaluate(p, x)
    if not isfinite(at_min[0].value):
        return STATUS_FIT_FAILED
    x_out[0] = x
    return STATUS_OK


cdef int find_crossing(Problem* p, double x0, double d2, double depth, double target,
                       double end, double g_end, double xtol, double* x_out) noexcept nogil:
    """Where C = target between x0 (C(x0) = target − depth) and end (C(end) − target = g_end ≥ 0).

    x0 and end lie in one smooth piece. Returns STATUS_OK or
    STATUS_FIT_FAILED. Newton steps on g = C − target from the parabolic
    guess x0 ± √(2 depth / d2), kept inside the bracket [x0, end]; regula
    falsi with the Illinois modification otherwise (bisection while an end is
    +inf).
    """
    cdef double sgn = 1.0 if end > x0 else -1.0
    cdef double lo = x0, hi = end, glo = -depth, ghi = g_end, x, xn, g
    cdef Eval e
    cdef int it, side = 0
    x_out[0] = NAN
    if d2 > 0.0 and isfinite(d2):
        x = x0 + sgn * sqrt(2.0 * depth / d2)
    else:
        x = 0.5 * (lo + hi)
    if not ((x - lo) * sgn > 0.0 and (hi - x) * sgn > 0.0):
        x = 0.5 * (lo + hi)
    for it in range(MAX_ITER):
        e = evaluate(p, x)
        g = e.value - target
        if g == 0.0:
            x_out[0] = x
            return STATUS_OK
        if g < 0.0:
            lo = x
            glo = g
            if side == -1:
                ghi *= 0.5
            side = -1
        else:
            hi = x
            ghi = g
            if side == 1:
                glo *= 0.5
            side = 1
        if fabs(hi - lo) <= xtol:
            x_out[0] = lo if fabs(glo) < fabs(ghi) else hi
            return STATUS_OK
        xn = NAN
        if isfinite(g) and isfinite(e.d1) and e.d1 != 0.0:
            xn = x - g / e.d1
        if not ((xn - lo) * sgn > 0.0 and (hi - xn) * sgn > 0.0):
            if isfinite(ghi):
                xn = lo - glo * (hi - lo) / (ghi - glo)
            if not ((xn - lo) * sgn > 0.0 and (hi - xn) * sgn > 0.0):
                xn = 0.5 * (lo + hi)
        if fabs(xn - x) <= 0.1 * xtol:
            x_out[0] = xn
            return STATUS_OK
        x = xn
    return STATUS_FIT_FAILED


# Offset of the left limit at a jump: the kernel evaluates a jump's own x on its right.
cdef double JUMP_EPS = 1.0e-11
# C within this of C_min at a jump: the best fit sits at the jump (xrmod.status.JUMP_TOLERANCE).
cdef double JUMP_TOL = 1.0e-3
#: The best fit sits at a jump when C there is within this of C_min (xrmod.status's).
JUMP_TOLERANCE = JUMP_TOL
# Most smooth pieces of a fit range (Tables takes at most 16 jumps).
cdef enum:
    MAX_PIECES = 17


cdef inline int worse(int a, int b) noexcept nogil:
    """The more severe of two fit codes: FIT_FAILED < MODEL_JUMP < BOUND_AT_LIMIT < OK."""
    cdef int ra = (0 if a == STATUS_FIT_FAILED else 1 if a == STATUS_MODEL_JUMP
                   else 2 if a == STATUS_BOUND_AT_LIMIT else 3)
    cdef int rb = (0 if b == STATUS_FIT_FAILED else 1 if b == STATUS_MODEL_JUMP
                   else 2 if b == STATUS_BOUND_AT_LIMIT else 3)
    return a if ra <= rb else b


cdef inline bint at_jump(Problem* p, double near, double far, double level) noexcept nogil:
    """Whether the best fit sits at a jump: C at or below *level* on its side (*near*), above
    it across the jump (*far*; a flat C through the jump is no minimum at it)."""
    return evaluate(p, near).value <= level and not (evaluate(p, far).value <= level)


cdef int outer_bound(Problem* p, bint at_limit, double xm, Eval em, double depth,
                     double target, double end, double* x_out) noexcept nogil:
    """The crossing of the target in one piece between its minimum xm and its edge *end*.

    NaN when C(end) < target: STATUS_BOUND_AT_LIMIT when *end* is a kT limit
    (*at_limit*), STATUS_MODEL_JUMP when it is a jump (S stops there).
    """
    cdef Eval e = evaluate(p, end)
    cdef double g = e.value - target
    x_out[0] = NAN
    if not (g >= 0.0):
        return STATUS_BOUND_AT_LIMIT if at_limit else STATUS_MODEL_JUMP
    return find_crossing(p, xm, em.d2, depth, target, end, g, XTOL_DEFAULT, x_out)


cdef int fit_problem(Problem* p, double x_start, double x_lo, double x_hi,
                     double delta, double* out) noexcept nogil:
    """Best fit and bounds as :class:`xrmod.status.Status` defines them; out[0:5] =
    kT_lo, kT, kT_hi, norm, C_min.

    The jumps in (x_lo, x_hi) split it into pieces [a_k, b_k]: a piece to the
    right of a jump starts p.jump_offset above it, one to its left ends
    JUMP_EPS below it. The piece holding x_start is minimised (Newton,
    :func:`minimise`), then the pieces beyond, outwards on each side, for as
    long as the next one's near edge is at or below the current target
    (lowest minimum so far + delta) or C falls away from that edge; each
    searched piece keeps its minimum. The lowest is the best fit; the
    outermost searched pieces whose minimum is at or below the target hold
    the bounds (:func:`outer_bound`); every jump between them must be
    bridged (C at or below the target on both sides) or the fit is
    STATUS_MODEL_JUMP, as it is when the best fit is at a jump (C at the
    edge of its piece at a jump within JUMP_TOL of C_min, and above that
    across the jump).
    """
    cdef double a[MAX_PIECES]
    cdef double b[MAX_PIECES]
    cdef double xm[MAX_PIECES]
    cdef Eval em[MAX_PIECES]
    cdef Py_ssize_t n = 0, k, k0 = 0, kl, kr, kb, kf, kt
    cdef double best, target, xj, xb_lo = NAN, xb_hi = NAN
    cdef Eval e
    cdef int status, s_lo, s_hi, i
    for i in range(5):
        out[i] = NAN
    a[0] = x_lo
    for i in range(p.n_jumps):
        xj = p.jumps[i]
        if a[n] < xj - JUMP_EPS and xj + p.jump_offset < x_hi and n + 1 < MAX_PIECES:
            b[n] = xj - JUMP_EPS
            if x_start >= xj:
                k0 = n + 1
            n += 1
            a[n] = xj + p.jump_offset
    b[n] = x_hi
    n += 1
    status = minimise(p, x_start, a[k0], b[k0], XTOL_DEFAULT, &xm[k0], &em[k0])
    if status != STATUS_OK:
        return status
    best = em[k0].value
    kr = k0
    while kr + 1 < n:  # rightwards
        e = evaluate(p, a[kr + 1])
        if not (e.value <= best + delta or e.d1 < 0.0):
            break
        kr += 1
        if minimise(p, a[kr], a[kr], b[kr], XTOL_DEFAULT, &xm[kr], &em[kr]) != STATUS_OK:
            return STATUS_FIT_FAILED
        if em[kr].value < best:
            best = em[kr].value
    kl = k0
    while kl > 0:  # leftwards
        e = evaluate(p, b[kl - 1])
        if not (e.value <= best + delta or e.d1 > 0.0):
            break
        kl -= 1
        if minimise(p, b[kl], a[kl], b[kl], XTOL_DEFAULT, &xm[kl], &em[kl]) != STATUS_OK:
            return STATUS_FIT_FAILED
        if em[kl].value < best:
            best = em[kl].value
    kb = k0
    for k in range(kl, kr + 1):
        if em[k].value < em[kb].value:
            kb = k
    target = em[kb].value + delta
    kf = kb  # the outermost pieces that reach the target
    kt = kb
    for k in range(kl, kr + 1):
        if em[k].value <= target:
            if k < kf:
                kf = k
            if k > kt:
                kt = k
    status = STATUS_OK
    if ((kb > 0 and at_jump(p, a[kb], b[kb - 1], em[kb].value + JUMP_TOL))
            or (kb < n - 1 and at_jump(p, b[kb], a[kb + 1], em[kb].value + JUMP_TOL))):
        status = STATUS_MODEL_JUMP  # the best fit is at a jump
    for k in range(kf, kt):  # every jump inside the hull of S is bridged, or S has islands
        if not (em[k].value <= target and em[k + 1].value <= target
                and evaluate(p, b[k]).value <= target
                and evaluate(p, a[k + 1]).value <= target):
            status = STATUS_MODEL_JUMP
    # the minimum's own piece: depth exactly delta (as the bounds were always found)
    s_lo = outer_bound(p, kf == 0, xm[kf], em[kf],
                       delta if kf == kb else target - em[kf].value, target, a[kf], &xb_lo)
    s_hi = outer_bound(p, kt == n - 1, xm[kt], em[kt],
                       delta if kt == kb else target - em[kt].value, target, b[kt], &xb_hi)
    if s_lo == STATUS_FIT_FAILED or s_hi == STATUS_FIT_FAILED:
        return STATUS_FIT_FAILED
    status = worse(status, worse(s_lo, s_hi))
    out[0] = exp(xb_lo)
    out[1] = exp(xm[kb])
    out[2] = exp(xb_hi)
    out[3] = em[kb].norm
    out[4] = em[kb].value if em[kb].value > 0.0 else 0.0  # C >= 0; rounding can dip below
    return status


# ---------------------------------------------------------------- layer 2 ---

def fold(
    const int32_t[::1] indptr,  # IN (n_out + 1,) CSR row pointers of the fold matrix
    const int32_t[::1] indices, # IN (nnz,) energy index of each non-zero
    const double[::1] data,     # IN (nnz,) redistribution probabilities
    const double[:, ::1] x,     # IN (n_energy, K) columns to fold, K a multiple of 4
    double[:, ::1] out,         # OUT (n_out, K)
):
    """Sparse × dense product: out[c, k] = sum_j data[j] * x[indices[j], k] over row c.

    The sum runs over each row's non-zeros in stored order, one accumulator
    per column, exactly as SciPy's CSR matrix-vector product does, so a
    column equals ``matrix @ x[:, k]`` bit for bit. The loop is
    ``xrmod_fold`` in ``_fold.h`` (blocks of 16 columns, an AVX2 clone);
    a multiple of 8 columns runs fastest. Every index must lie in
    [0, n_energy): the caller checks the matrix once (this is per θ).
    """
    cdef Py_ssize_t nrow = out.shape[0], ncol = out.shape[1], i
    if x.shape[1] != ncol or indptr.shape[0] != nrow + 1:
        raise ValueError(
            f"fold: x has {x.shape[1]} columns and indptr {indptr.shape[0]} entries for "
            f"out of shape ({nrow}, {ncol})"
        )
    if ncol % 4:
        raise ValueError(f"fold: the number of columns must be a multiple of 4, not {ncol}")
    if ncol == 0 or nrow == 0:
        return
    if indptr[0] != 0 or indptr[nrow] > indices.shape[0] or indices.shape[0] != data.shape[0]:
        raise ValueError("fold: indptr, indices and data disagree")
    for i in range(nrow):
        if indptr[i + 1] < indptr[i]:
            raise ValueError("fold: indptr must be non-decreasing")
    with nogil:
        xrmod_fold(nrow, ncol, &indptr[0], &indices[0] if indices.shape[0] else NULL,
                   &data[0] if data.shape[0] else NULL, &x[0, 0], &out[0, 0])


def correction(
    const double[::1] knots,        # IN (n,) base table knots
    const double[:, ::1] values,    # IN (n, nch) base ln f
    const double[:, ::1] slopes,    # IN (n, nch) base d ln f / dx
    const double[::1] svalues,      # IN (n,) base ln F
    const double[::1] sslopes,      # IN (n,) base d ln F / dx
    const double[::1] x,            # IN (m,) correction knots
    const unsigned char[::1] left,  # IN (m,) 1: evaluate the base from the left
    const double[:, ::1] folded,    # IN (k, nch) exact expected counts (modified ARF)
    const int64_t[::1] column,      # IN (m,) row of folded for each knot
    const double[:, ::1] operator,  # IN (m, m) knot values -> knot slopes (block diagonal)
    double[:, ::1] out_values,      # OUT (m, nch) ln(f'_c / f_c)
    double[:, ::1] out_slopes,      # OUT (m, nch) its x-derivative
    double[::1] out_svalues,        # OUT (m,) ln(F' / F)
    double[::1] out_sslopes,        # OUT (m,) its x-derivative
    double[:, ::1] work,            # WORK (m, nch)
    double floor,                   # IN smallest expected count before the log
):
    """The per-θ correction table: log-ratios of exact modified folds to the base table.

    out_values[i, c] = ln max(f'_c, floor) − ln f_c(x_i), with f the base
    table (Hermite, from the left where ``left[i]``); out_slopes = operator @
    out_values (the spline slopes); the scalar slope is chosen consistent with
    the channels: d ln F'/dx = Σ_c (f'_c / F') d ln f'_c/dx at every knot.
    :func:`base_at_knots` then :func:`correction_from_base`, in one call.
    """
    base_at_knots(knots, values, slopes, svalues, sslopes, x, left,
                  out_values, work, out_svalues, out_sslopes)
    correction_from_base(out_values, work, out_svalues, out_sslopes, folded, column, operator,
                         out_values, out_slopes, out_svalues, out_sslopes, floor)


def base_at_knots(
    const double[::1] knots,        # IN (n,) base table knots
    const double[:, ::1] values,    # IN (n, nch) base ln f
    const double[:, ::1] slopes,    # IN (n, nch) base d ln f / dx
    const double[::1] svalues,      # IN (n,) base ln F
    const double[::1] sslopes,      # IN (n,) base d ln F / dx
    const double[::1] x,            # IN (m,) correction knots
    const unsigned char[::1] left,  # IN (m,) 1: evaluate the base from the left
    double[:, ::1] out_values,      # OUT (m, nch) ln f_c(x_i)
    double[:, ::1] out_slopes,      # OUT (m, nch) d ln f_c / dx at x_i
    double[::1] out_svalues,        # OUT (m,) ln F(x_i)
    double[::1] out_sslopes,        # OUT (m,) d ln F / dx at x_i
):
    """The base table and its x-derivative at the correction knots (the same for every θ).

    The Hermite interpolation of the fit kernel, from the left piece at a
    break where ``left[i]``.
    """
    cdef Py_ssize_t n = knots.shape[0], nch = values.shape[1], m = x.shape[0]
    cdef Py_ssize_t i, j, c
    cdef double h, t, w0, w1, w2, w3, d0, d1, d2, d3
    if (slopes.shape[0] != n or slopes.shape[1] != nch or values.shape[0] != n
            or svalues.shape[0] != n or sslopes.shape[0] != n):
        raise ValueError("base table arrays disagree")
    if (left.shape[0] != m or out_values.shape[0] != m or out_slopes.shape[0] != m
            or out_svalues.shape[0] != m or out_sslopes.shape[0] != m
            or out_values.shape[1] != nch or out_slopes.shape[1] != nch):
        raise ValueError("correction arrays disagree")
    if n < 2:
        raise ValueError("the base table needs two knots")
    with nogil:
        for i in range(m):
            # base piece at x[i] (the kernel's rule; the left piece at a break if asked)
            j = find_piece(&knots[0], n, x[i])
            if left[i]:
                while j > 0 and knots[j] >= x[i]:
                    j -= 1
            if not knots[j + 1] > knots[j]:
                j -= 1
            h = knots[j + 1] - knots[j]
            t = (x[i] - knots[j]) / h
            # hermite_basis's weights in Horner form: its roundings are those of every
            # library written so far (hermite_basis's own move fitted kT by ~1e-10)
            w0 = (2.0 * t - 3.0) * t * t + 1.0
            w1 = ((t - 2.0) * t + 1.0) * t * h
            w2 = (3.0 - 2.0 * t) * t * t
            w3 = (t - 1.0) * t * t * h
            d0 = (6.0 * t - 6.0) * t / h
            d1 = (3.0 * t - 4.0) * t + 1.0
            d2 = (6.0 - 6.0 * t) * t / h
            d3 = (3.0 * t - 2.0) * t
            out_svalues[i] = (w0 * svalues[j] + w1 * sslopes[j] + w2 * svalues[j + 1]
                              + w3 * sslopes[j + 1])
            out_sslopes[i] = (d0 * svalues[j] + d1 * sslopes[j] + d2 * svalues[j + 1]
                              + d3 * sslopes[j + 1])
            for c in range(nch):
                out_values[i, c] = (w0 * values[j, c] + w1 * slopes[j, c]
                                    + w2 * values[j + 1, c] + w3 * slopes[j + 1, c])
                out_slopes[i, c] = (d0 * values[j, c] + d1 * slopes[j, c]
                                    + d2 * values[j + 1, c] + d3 * slopes[j + 1, c])


def correction_from_base(
    const double[:, ::1] base,      # IN (m, nch) ln f_c at the knots (base_at_knots)
    const double[:, ::1] base_d,    # IN (m, nch) d ln f_c / dx at the knots
    const double[::1] sbase,        # IN (m,) ln F at the knots
    const double[::1] sbase_d,      # IN (m,) d ln F / dx at the knots
    const double[:, ::1] folded,    # IN (k, nch) exact expected counts (modified ARF)
    const int64_t[::1] column,      # IN (m,) row of folded for each knot
    const double[:, ::1] operator,  # IN (m, m) knot values -> knot slopes (block diagonal)
    double[:, ::1] out_values,      # OUT (m, nch) ln(f'_c / f_c); may be *base*
    double[:, ::1] out_slopes,      # OUT (m, nch) its x-derivative
    double[::1] out_svalues,        # OUT (m,) ln(F' / F); may be *sbase*
    double[::1] out_sslopes,        # OUT (m,) its x-derivative; may be *sbase_d*
    double floor,                   # IN smallest expected count before the log
):
    """The per-θ correction table from the base table at its knots (see :func:`correction`).

    *base_d* must not be *out_slopes*. The base arrays are the same for
    every θ: the native engine computes them once.
    """
    cdef Py_ssize_t nch = base.shape[1], m = base.shape[0]
    cdef Py_ssize_t i, c, k, col
    cdef double fsum, s, f, acc
    if (base_d.shape[0] != m or sbase.shape[0] != m or sbase_d.shape[0] != m
            or column.shape[0] != m or operator.shape[0] != m or operator.shape[1] != m
            or out_values.shape[0] != m or out_slopes.shape[0] != m
            or out_svalues.shape[0] != m or out_sslopes.shape[0] != m
            or folded.shape[1] != nch or base_d.shape[1] != nch or out_values.shape[1] != nch
            or out_slopes.shape[1] != nch):
        raise ValueError("correction arrays disagree")
    if m and &base_d[0, 0] == &out_slopes[0, 0]:
        raise ValueError("base_d and out_slopes must not share memory")
    for i in range(m):
        if not 0 <= column[i] < folded.shape[0]:
            raise ValueError(f"column {column[i]} out of range")
    with nogil:
        for i in range(m):
            col = column[i]
            fsum = 0.0
            for c in range(nch):
                fsum += folded[col, c]
            if not fsum > floor:
                fsum = floor
            out_svalues[i] = log(fsum) - sbase[i]
            out_sslopes[i] = -sbase_d[i]  # completed below
            for c in range(nch):
                f = folded[col, c]
                if not f > floor:
                    f = floor
                out_values[i, c] = log(f) - base[i, c]
        for i in range(m):
            for c in range(nch):
                out_slopes[i, c] = 0.0
            for k in range(m):
                s = operator[i, k]
                if s != 0.0:
                    for c in range(nch):
                        out_slopes[i, c] += s * out_values[k, c]
            col = column[i]
            fsum = 0.0
            acc = 0.0
            for c in range(nch):
                f = folded[col, c]
                fsum += f
                acc += f * (base_d[i, c] + out_slopes[i, c])
            if fsum > 0.0:
                out_sslopes[i] += acc / fsum


def cstat(
    const double[::1] counts,   # IN (n,) D >= 0
    const double[::1] model,    # IN (n,) m
):
    """XSPEC's C-statistic 2 Σ [m − D + D ln(D/m)]: log term 0 where D = 0, +inf where m ≤ 0 < D."""
    cdef Py_ssize_t n = counts.shape[0], c
    cdef double s = 0.0, d, m
    if model.shape[0] != n:
        raise ValueError(f"counts and model differ in length: {n} and {model.shape[0]}")
    with nogil:
        for c in range(n):
            d = counts[c]
            m = model[c]
            if d > 0.0:
                if not m > 0.0:
                    s = INFINITY
                    break
                s += m - d + d * log(d / m)
            else:
                s += m - d
    return 2.0 * s


def wstat(
    const double[::1] counts,       # IN (n,) source-region counts S >= 0
    const double[::1] background,   # IN (n,) background-region counts B >= 0
    const double[::1] alpha,        # IN (n,) background scaling > 0
    const double[::1] model,        # IN (n,) source model counts mu >= 0
):
    """XSPEC's W-statistic (``cstat`` with a background) for a fixed source model.

    The background expectation is profiled out channel by channel (see
    ``wstat_channel``); the value is 0 when the model explains both spectra exactly.
    """
    cdef Py_ssize_t n = counts.shape[0], c
    cdef double s = 0.0, g, h
    if model.shape[0] != n or background.shape[0] != n or alpha.shape[0] != n:
        raise ValueError("counts, background, alpha and model differ in length")
    with nogil:
        for c in range(n):
            s += wstat_channel(model[c], counts[c], background[c], alpha[c], &g, &h)
    return s


cdef class Tables:
    """The tables of one fit model: a base table plus an optional correction.

    Parameters
    ----------
    knots, values, slopes, scalar_values, scalar_slopes
        Of the base table: (n,) knots in x, (n, nch) ln f_c and d ln f_c / dx,
        (n,) ln F and d ln F / dx.
    correction : tuple or None
        The same five arrays for a correction table whose ln f adds to the
        base one (the per-θ modified-ARF ratio), or None.
    jumps : array_like or None
        Increasing x where the model jumps (a piece boundary of the tables):
        the minimiser searches each smooth piece separately.
    jump_offset : float
        A minimum at the right limit of a jump is reported this far above it
        (where the model function itself is on the right side).

    The arrays are referenced, not copied: keep them alive and unchanged.
    """

    cdef Problem p
    cdef object _keep
    cdef double* _memo
    cdef double* _scratch
    cdef Py_ssize_t nch
    cdef const double[::1] _jumps
    cdef const double[::1] _bkg
    cdef const double[::1] _alpha

    def __cinit__(self):
        self._memo = NULL
        self._scratch = NULL

    def __init__(self, knots, values, slopes, scalar_values, scalar_slopes, correction=None,
                 jumps=None, double jump_offset=0.0):
        import numpy as np

        parts = [(knots, values, slopes, scalar_values, scalar_slopes)]
        self._jumps = np.ascontiguousarray(
            np.sort(np.asarray([] if jumps is None else jumps, dtype=np.float64))
        )
        if self._jumps.shape[0] > 16:
            raise ValueError(f"at most 16 jumps, got {self._jumps.shape[0]}")
        self.p.n_jumps = self._jumps.shape[0]
        self.p.jump_offset = jump_offset
        self.p.jumps = &self._jumps[0] if self.p.n_jumps > 0 else NULL
        if correction is not None:
            parts.append(tuple(correction))
        self._keep = []
        cdef Py_ssize_t total = 0, nch = -1, k, n
        cdef const double[::1] kx
        cdef const double[:, ::1] ky
        cdef const double[:, ::1] kd
        cdef const double[::1] sy
        cdef const double[::1] sd
        for part in parts:
            kx, ky, kd, sy, sd = part
            n = kx.shape[0]
            if n < 1:
                raise ValueError("a table needs at least one knot")
            if ky.shape[0] != n or kd.shape[0] != n or sy.shape[0] != n or sd.shape[0] != n:
                raise ValueError(f"table arrays disagree with its {n} knots")
            if nch < 0:
                nch = ky.shape[1]
            if ky.shape[1] != nch or kd.shape[1] != nch:
                raise ValueError(f"table values need {nch} channels, got {ky.shape[1]}")
            for k in range(n - 1):
                if not kx[k] <= kx[k + 1]:
                    raise ValueError("table knots must be non-decreasing")
            total += n
            self._keep.append((kx, ky, kd, sy, sd))
        self.nch = nch
        self._memo = <double*> malloc(total * (2 * sizeof(double) + 1))
        self._scratch = <double*> malloc(3 * nch * sizeof(double))
        if self._memo == NULL or self._scratch == NULL:
            raise MemoryError()
        self.p.scratch = self._scratch
        self.p.bkg = NULL
        self.p.alpha = NULL
        cdef double* memo = self._memo
        cdef unsigned char* flags = <unsigned char*> (self._memo + 2 * total)
        self.p.n_tables = len(parts)
        for k, part in enumerate(self._keep):
            kx, ky, kd, sy, sd = part
            n = kx.shape[0]
            self.p.tables[k].n = n
            self.p.tables[k].nch = nch
            self.p.tables[k].x = &kx[0]
            self.p.tables[k].y = &ky[0, 0]
            self.p.tables[k].d = &kd[0, 0]
            self.p.tables[k].sy = &sy[0]
            self.p.tables[k].sd = &sd[0]
            self.p.tables[k].py = memo
            self.p.tables[k].pd = memo + n
            self.p.tables[k].done = flags
            memo += 2 * n
            flags += n

    def __dealloc__(self):
        if self._memo != NULL:
            free(self._memo)
        if self._scratch != NULL:
            free(self._scratch)

    cdef void _reset(self, const double* counts, Py_ssize_t nch) noexcept nogil:
        cdef Py_ssize_t c, j
        cdef int k
        cdef double total = 0.0, dlogd = 0.0, d
        for c in range(nch):
            d = counts[c]
            if d > 0.0:
                total += d
                dlogd += d * log(d)
        self.p.counts = counts
        self.p.total = total
        self.p.const_term = dlogd - total * log(total) if total > 0.0 else 0.0
        self.p.norm_last = NAN
        self.p.n_eval = 0
        if self.p.bkg != NULL:
            d = 0.0
            for c in range(nch):
                d += self.p.alpha[c] * self.p.bkg[c]
            self.p.net = total - d if total - d > 0.1 * total else 0.1 * total
        for k in range(self.p.n_tables):
            for j in range(self.p.tables[k].n):
                self.p.tables[k].done[j] = 0

    def profile(
        self,
        const double[::1] counts,   # IN (nch,) D >= 0
        const double[::1] x,        # IN (m,) where to evaluate
        double[:, ::1] out,         # OUT (m, 4) C, C', C'', norm
        background=None,            # IN (nch,) background counts B >= 0, or None
        alpha=None,                 # IN (nch,) background scaling > 0 (with background)
    ):
        """The profiled statistic, its first two x-derivatives and the norm at each x.

        C-stat without a background; with one, the W-statistic (XSPEC's
        ``cstat`` with a background file) profiled over the background too.
        """
        cdef Eval e
        cdef Py_ssize_t i
        self._check_counts(counts)
        self._set_background(background, alpha)
        if out.shape[0] != x.shape[0] or out.shape[1] != 4:
            raise ValueError(f"out must have shape ({x.shape[0]}, 4)")
        with nogil:
            self._reset(&counts[0], counts.shape[0])
            for i in range(x.shape[0]):
                e = evaluate(&self.p, x[i])
                out[i, 0] = e.value
                out[i, 1] = e.d1
                out[i, 2] = e.d2
                out[i, 3] = e.norm

    def fit(
        self,
        const double[::1] counts,   # IN (nch,) D >= 0, sum > 0
        double x_start,             # IN first guess of x = ln kT
        double x_lo,                # IN lower fit limit of x
        double x_hi,                # IN upper fit limit of x
        double delta,               # IN Δstat of the bounds
        double[::1] out,            # OUT (5,) kT_lo, kT, kT_hi, norm, C_min
        background=None,            # IN (nch,) background counts B >= 0, or None
        alpha=None,                 # IN (nch,) background scaling > 0 (with background)
    ):
        """Fit kT and norm; the bounds where the profiled statistic rises by delta.

        The statistic is C-stat, or W-stat with a *background* (see
        :meth:`profile`). Returns a status code (``xrmod.status.Status``'s
        definition): OK, BOUND_AT_LIMIT (a bound is NaN: the statistic stays
        below C_min + delta up to the kT limit), MODEL_JUMP (the fit meets one
        of *jumps*: a bound that stops there is NaN) or FIT_FAILED (every
        output NaN). kT values are exp(x).
        """
        cdef int status, i
        self._check_counts(counts)
        self._set_background(background, alpha)
        if out.shape[0] < 5:
            raise ValueError("out needs 5 elements")
        if not (x_lo < x_hi):
            raise ValueError(f"x_lo < x_hi is required, got [{x_lo}, {x_hi}]")
        if not delta > 0.0:
            raise ValueError(f"delta must be > 0, not {delta}")
        with nogil:
            self._reset(&counts[0], counts.shape[0])
            if self.p.total > 0.0:
                status = fit_problem(&self.p, x_start, x_lo, x_hi, delta, &out[0])
            else:
                for i in range(5):
                    out[i] = NAN
                status = STATUS_FIT_FAILED
        return status

    @property
    def evaluations(self):
        """Evaluations of the statistic in the last fit or profile (diagnostics)."""
        return self.p.n_eval

    cdef _check_counts(self, const double[::1] counts):
        if counts.shape[0] != self.nch:
            raise ValueError(f"counts have {counts.shape[0]} channels, the tables {self.nch}")

    cdef _set_background(self, background, alpha):
        cdef Py_ssize_t c
        if background is None:
            if alpha is not None:
                raise ValueError("alpha is given without a background")
            self.p.bkg = NULL
            self.p.alpha = NULL
            return
        self._bkg = background
        self._alpha = alpha
        if self._bkg.shape[0] != self.nch or self._alpha.shape[0] != self.nch:
            raise ValueError(
                f"background and alpha need {self.nch} channels, got "
                f"{self._bkg.shape[0]} and {self._alpha.shape[0]}"
            )
        for c in range(self.nch):
            if not (self._bkg[c] >= 0.0 and isfinite(self._bkg[c])):
                raise ValueError(f"background counts must be finite and >= 0 (channel {c})")
            if not (self._alpha[c] > 0.0 and isfinite(self._alpha[c])):
                raise ValueError(f"alpha must be finite and > 0 (channel {c})")
        self.p.bkg = &self._bkg[0]
        self.p.alpha = &self._alpha[0]


def fit_points(
    Tables original,                 # IN the T1 fits' tables (original ARF)
    Tables modified,                 # IN the T1′ fits' tables (θ's ARF)
    const double[:, ::1] folded,     # IN (k, nch) θ's exact folds for norm 1
    const int64_t[::1] node,         # IN (NT,) row of folded of each grid temperature
    const double[::1] x_true,        # IN (NT,) ln kT of each grid temperature (first guess)
    double norm,                     # IN source norm: the mean is norm * folded row
    uint64_t seed,                   # IN root seed of the per-point streams
    int64_t start,                   # IN flat index of the first point
    bint asimov,                     # IN counts = mean instead of a Poisson draw
    double x_lo, double x_hi,        # IN fit limits in x
    double delta,                    # IN Δstat of the bounds
    int no_counts,                   # IN status code of a point without counts
    double[:, ::1] results,          # OUT (n, 3) kT_lo, kT, kT_hi of T1
    double[:, ::1] results_modified, # OUT (n, 3) the same of T1′
    int8_t[::1] status,              # OUT (n,) status of T1
    int8_t[::1] status_modified,     # OUT (n,) status of T1′
    double[:, ::1] extras,           # OUT (n, 5) norm, norm′, C_min, C′_min, counts
):
    """Simulate and fit the points start … start + n − 1 of one θ, without a background.

    Point ``flat`` has temperature index ``flat % NT``; its counts are a
    Poisson draw (``_random.h``: NumPy's ``default_rng(SeedSequence((seed,
    flat))).poisson`` bit for bit) from ``norm * folded[node[t]]``, fitted
    with *original* and *modified* as :meth:`Tables.fit` does. A point with
    no counts gets *no_counts* for both fits and NaN values. The outputs are
    the unit's arrays, filled in place.
    """
    cdef Py_ssize_t n = results.shape[0], nch = folded.shape[1], nt = node.shape[0]
    cdef Py_ssize_t i, c, t
    cdef double total
    cdef double out[5]
    if original.nch != nch or modified.nch != nch:
        raise ValueError(f"tables have {original.nch} and {modified.nch} channels, folds {nch}")
    if (results_modified.shape[0] != n or status.shape[0] != n or status_modified.shape[0] != n
            or extras.shape[0] != n or results.shape[1] < 3 or results_modified.shape[1] < 3
            or extras.shape[1] < 5 or x_true.shape[0] != nt or nt == 0):
        raise ValueError("fit_points: output shapes disagree")
    for t in range(nt):
        if not 0 <= node[t] < folded.shape[0]:
            raise ValueError(f"fit_points: node {node[t]} out of range")
    if not (x_lo < x_hi) or not delta > 0.0:
        raise ValueError("fit_points: x_lo < x_hi and delta > 0 are required")
    if start < 0:
        raise ValueError("fit_points: start must be >= 0")
    for t in range(folded.shape[0]):
        for c in range(nch):
            if not (folded[t, c] >= 0.0 and isfinite(folded[t, c])):
                raise ValueError("fit_points: expected counts must be finite and >= 0")
    cdef double[::1] mean = cvarray_1d(nch)
    cdef double[::1] counts = cvarray_1d(nch)
    original._set_background(None, None)
    modified._set_background(None, None)
    with nogil:
        for i in range(n):
            t = (start + i) % nt
            for c in range(nch):
                mean[c] = norm * folded[node[t], c]
            if asimov:
                total = 0.0
                for c in range(nch):
                    counts[c] = mean[c]
                    total += mean[c]
            else:
                total = xr_poisson_point(&mean[0], &counts[0], nch, seed, <uint64_t> (start + i))
            extras[i, 4] = total
            if not total > 0.0:
                status[i] = no_counts
                status_modified[i] = no_counts
                for c in range(3):
                    results[i, c] = NAN
                    results_modified[i, c] = NAN
                for c in range(4):
                    extras[i, c] = NAN
                continue
            original._reset(&counts[0], nch)
            status[i] = fit_problem(&original.p, x_true[t], x_lo, x_hi, delta, out)
            results[i, 0], results[i, 1], results[i, 2] = out[0], out[1], out[2]
            extras[i, 0], extras[i, 2] = out[3], out[4]
            modified._reset(&counts[0], nch)
            status_modified[i] = fit_problem(&modified.p, x_true[t], x_lo, x_hi, delta, out)
            results_modified[i, 0], results_modified[i, 1], results_modified[i, 2] = (
                out[0], out[1], out[2])
            extras[i, 1], extras[i, 3] = out[3], out[4]


cdef double[::1] cvarray_1d(Py_ssize_t n):
    import numpy as np
    return np.empty(n)
