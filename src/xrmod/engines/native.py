"""The ``native`` engine: fold, simulate and fit in channel space, compiled.

It computes what :class:`xrmod.engines.reference.ReferenceEngine` computes
(the same simulated counts bit for bit, the same status codes and extras,
bounds within 1 % of their statistical error σ, kT within 1 % of σ or at most
0.002 above the reference's minimum of the exact statistic, which is itself
that rough: XSPEC's float32 zbremss steps in kT) in about 0.2 ms per grid
point (measured numbers: ``python bench/profile_native.py --accuracy``; a
whole run: ``bench/throughput.py``). Both engines fit by the rule that
:class:`xrmod.status.Status` defines, where zbremss jumps in kT
(:data:`KT_JUMPS`: 13.58 keV by 3.4 %, and 0.1358, 0.5432, 54.32 keV) too: the
best fit is the global minimum over the smooth pieces between jumps, the
bounds are the outermost crossings of C_min + ``error_delta``, each found
inside a piece, and a fit that meets a jump is MODEL_JUMP (−6). Each fit (T1,
T1′) has its own status. Notation: x = ln kT; f_c(x) the expected counts in
band channel c for norm 1, exposure · Rᵀ(A ⊙ S_kT); F = Σ_c f_c.

* **Response.** The RMF restricted to the band channels (``RMF.band_channels``)
  and to the energies that reach them, as CSR (channels × energies): the
  reference's too (:attr:`xrmod.job.EngineInputs.fold_matrix`).
* **Original ARF, once per process.** XSPEC's model function gives the
  spectra at knots in x covering the fit range (spacing ``spacing``):
  ``fit.kt_limits``, its lower end raised to the lowest kT at which the model
  has counts in the band (:mod:`xrmod.engines.source`; a hard band's counts
  vanish at the lowest temperatures: the fits cannot enter there),
  with a knot on each side of every kT where the model is not smooth
  (:data:`KT_BREAKS`: the Gaunt factor's table switches, kinks and jumps).
  ONE sparse × dense product folds them all with the original ARF. The table
  holds ln f_c and its x-derivative (5-point differences within each smooth
  piece) at every knot: a cubic Hermite interpolant in *log* space, so every
  channel, however few counts it expects, has the same relative accuracy and
  is never negative; a channel that expects none at a knot (float32
  underflow at the low-kT end of a band's high channels) is floored at
  10⁻³⁰⁰, where C is enormous (the reference's is +∞). (A low-rank basis of
  the spectra cannot do that: its reconstruction error is relative to the
  peak, so the exponential tails of cool spectra come out negative or far
  off, and fits at 0.5 keV missed by up to 2σ with 10 basis vectors.)
* **Modified ARF, once per θ.** ONE product folds, with A′, the exact spectra
  at the grid's temperatures, one knot below and above them, and at the
  model's breaks near them (:func:`correction_nodes`). ln(f′_c / f_c) is smooth
  between breaks (A′/A only reweights each channel's energy response), so the
  model of the T1′ fits is the original table plus a cubic spline in x
  through the exact log-ratios at those knots (:func:`correction_table`):
  exact at every grid temperature, whose fold is also the simulation mean.
  Along a grid axis p the family is affine in (``amp``, ``slope``, ``depth``:
  A′ = A + p·A g), ONE product folds A g for all the θs that differ only in
  p, and each θ's folds are F(A) + p·F(A g): the same to rounding (T1′
  within 1e-8 relative, counts and T1 identical; :meth:`NativeEngine.
  _folded_modified`), and the shared counter hands those θs out together.
* **Simulation** uses those exact folds: μ = norm · exposure · Rᵀ(A′ ⊙ S_T)
  (summed in the reference's order: bit-identical), D a Poisson draw from
  ``default_rng(SeedSequence((seed, flat_index)))`` (NumPy's numbers, drawn
  by :mod:`xrmod._random` in C), or μ for ``asimov``. A unit's points are
  drawn and fitted in one compiled loop (:func:`xrmod._fit.fit_points`).
* **Fits** (:class:`xrmod._fit.Tables`, ``nogil``): the profiled C-statistic
  C(x) = 2 [Σ D ln D − N ln N + N ln F(x) − Σ_c D_c ln f_c(x)] is a Hermite
  interpolant of dot products of the counts with the table rows of the knots a
  fit visits; C, C′ and C″ are then analytic and cost O(1). Safeguarded
  Newton for the minimum of each smooth piece between the model's jumps
  (:data:`KT_JUMPS`), from the piece of the true temperature outwards while
  the next piece's near edge is at or below the target or C falls away from
  it; safeguarded Newton / regula falsi for the bounds at C_min +
  ``error_delta`` between a piece's minimum and its edge (never across a
  jump: a search that met a discontinuity could not converge, or converged
  onto it).

* **Background** (``instrument.background``): the data have mean μ + αB and
  a new background spectrum is drawn (:func:`xrmod.engines.base.simulate`);
  the fits minimise XSPEC's W-statistic, the background profiled channel by
  channel in closed form and the norm by Newton steps. That breaks the O(1)
  projections above: each evaluation is a pass over the channels (a few
  milliseconds per point instead of half a millisecond).

Memory per process is independent of the grid size: the table is (knots ×
channels), the per-θ arrays (correction knots × channels).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from xrmod.engines.base import EXTRAS, Engine, PointResult, UnitResult
from xrmod.engines.source import BandSource
from xrmod.models import KT_BREAKS, KT_JUMPS, KT_SIDE_EPS
from xrmod.status import Status

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xrmod import _fit
    from xrmod.grid import WorkUnit
    from xrmod.job import Job

__all__ = [
    "KT_BREAKS",
    "KT_JUMPS",
    "LogTable",
    "NativeEngine",
    "base_at_knots",
    "base_table",
    "correction_nodes",
    "correction_table",
]

log = logging.getLogger(__name__)


#: Largest knot spacing of the original-ARF table in ln kT.
DEFAULT_SPACING = 0.04
#: Largest gap between the nodes of the per-θ correction in ln kT.
DEFAULT_GAP = 0.5
#: Extra correction nodes this far (ln kT) below and above the grid's temperatures.
DEFAULT_MARGIN = 0.15
#: Breaks within this distance (ln kT) of a grid temperature get correction nodes.
DEFAULT_WINDOW = 0.3

# Relative offset of the one-sided evaluations at a break (the model's knowledge).
_BREAK_EPS = KT_SIDE_EPS
# Smallest expected count kept before taking logs (channels that see no flux).
_FLOOR = 1.0e-300


@dataclass(frozen=True)
class LogTable:
    """ln f_c(x) and ln F(x) tabulated for cubic Hermite interpolation in x = ln kT.

    A knot may appear twice (a break: the end of the piece to its left and
    the start of the piece to its right). Outside its knots the table is
    extended linearly.

    Attributes
    ----------
    knots : numpy.ndarray
        (n,) non-decreasing x.
    values, slopes : numpy.ndarray
        (n, n_channel) ln f_c and d ln f_c / dx at the knots.
    scalar_values, scalar_slopes : numpy.ndarray
        (n,) ln F and d ln F / dx at the knots.
    """

    knots: np.ndarray
    values: np.ndarray
    slopes: np.ndarray
    scalar_values: np.ndarray
    scalar_slopes: np.ndarray

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The five arrays in the order :class:`xrmod._fit.Tables` takes them."""
        return self.knots, self.values, self.slopes, self.scalar_values, self.scalar_slopes

    def __call__(
        self, x: float, *, left: bool = False
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """The interpolated ln f_c(x), d ln f_c/dx (all channels), ln F(x), d ln F/dx.

        The same interpolation as the kernel's.

        At a break the kernel uses the piece to the right; ``left=True`` gives
        the limit from the left instead.
        """
        k, n = self.knots, self.knots.size
        if n == 1:
            return (
                self.values[0].copy(),
                np.zeros(self.values.shape[1]),
                float(self.scalar_values[0]),
                0.0,
            )
        if x < k[0] or x > k[-1]:
            j = 0 if x < k[0] else n - 1
            h = x - k[j]
            return (
                self.values[j] + h * self.slopes[j],
                self.slopes[j].copy(),
                float(self.scalar_values[j] + h * self.scalar_slopes[j]),
                float(self.scalar_slopes[j]),
            )
        j = int(np.searchsorted(k, x, side="left" if left else "right")) - 1
        j = min(max(j, 0), n - 2)
        if not k[j + 1] > k[j]:
            j -= 1
        h = k[j + 1] - k[j]
        t = (x - k[j]) / h
        # Hermite basis: value weights and derivative weights
        w = (
            2 * t**3 - 3 * t**2 + 1,
            (t**3 - 2 * t**2 + t) * h,
            -2 * t**3 + 3 * t**2,
            (t**3 - t**2) * h,
        )
        dw = (
            (6 * t**2 - 6 * t) / h,
            3 * t**2 - 4 * t + 1,
            (6 * t - 6 * t**2) / h,
            3 * t**2 - 2 * t,
        )
        out = []
        for u in (w, dw):
            f = u[0] * self.values[j] + u[1] * self.slopes[j]
            f += u[2] * self.values[j + 1] + u[3] * self.slopes[j + 1]
            sc = u[0] * self.scalar_values[j] + u[1] * self.scalar_slopes[j]
            sc += u[2] * self.scalar_values[j + 1] + u[3] * self.scalar_slopes[j + 1]
            out.append((f, float(sc)))
        return out[0][0], out[1][0], out[0][1], out[1][1]


def _log(folded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logs of folded spectra (rows = x): ln f (floored), ln F, and the weights f / F."""
    total = np.maximum(folded.sum(axis=1), _FLOOR)
    return np.log(np.maximum(folded, _FLOOR)), np.log(total), folded / total[:, None]


def _fd_weights(nodes: np.ndarray, at: float) -> np.ndarray:
    """Weights of the derivative at *at* of the polynomial through *nodes* (Fornberg, order 1)."""
    n = nodes.size
    w = np.zeros(n)
    for i in range(n):
        others = np.delete(nodes, i)
        denom = np.prod(nodes[i] - others)
        # d/dx prod_{m != i} (x - x_m) at x = at
        total = 0.0
        for k in range(n - 1):
            total += np.prod(np.delete(at - others, k))
        w[i] = total / denom
    return w


def _piece_slopes(x: np.ndarray, y: np.ndarray, width: int = 5) -> np.ndarray:
    """x-derivatives at the nodes of one smooth piece, from up to *width*-point stencils."""
    m = x.size
    if m == 1:
        return np.zeros_like(y)
    s = min(width, m)
    out = np.empty_like(y)
    for i in range(m):
        start = min(max(i - s // 2, 0), m - s)
        w = _fd_weights(x[start : start + s], x[i])
        out[i] = np.tensordot(w, y[start : start + s], axes=1)
    return out


def _pieces(x_lo: float, x_hi: float, breaks: Sequence[float], spacing: float) -> list:
    """Uniform knots in x, one array per interval between consecutive breaks."""
    inner = sorted({math.log(b) for b in breaks if x_lo < math.log(b) < x_hi})
    edges = [x_lo, *inner, x_hi]
    return [
        np.linspace(a, b, max(math.ceil((b - a) / spacing), 1) + 1)
        for a, b in itertools.pairwise(edges)
    ]


def base_table(
    spectra: Callable[[np.ndarray], np.ndarray],
    fold: Callable[[np.ndarray], np.ndarray],
    x_limits: tuple[float, float],
    *,
    breaks: Sequence[float] = (),
    spacing: float = DEFAULT_SPACING,
) -> LogTable:
    """Tabulate ln f_c(x) over *x_limits* for one ARF.

    Parameters
    ----------
    spectra : callable
        kT array (keV) → (n, n_energy) photon fluxes (XSPEC's model function).
    fold : callable
        (n, n_energy) spectra → (n, n_channel) expected counts (one product).
    x_limits : (float, float)
        Range of x = ln kT to cover.
    breaks : sequence of float
        kT where the model is not smooth: pieces end there, evaluated just
        inside each side.
    spacing : float
        Largest knot spacing in x.
    """
    x_lo, x_hi = x_limits
    pieces = _pieces(x_lo, x_hi, breaks, spacing)
    kts = []
    for nodes in pieces:
        kt = np.exp(nodes)
        if nodes[0] > x_lo:
            kt[0] *= 1.0 + _BREAK_EPS
        if nodes[-1] < x_hi:
            kt[-1] *= 1.0 - _BREAK_EPS
        kts.append(kt)
    values, scalar, weights = _log(fold(spectra(np.concatenate(kts))))
    slopes = np.empty_like(values)
    start = 0
    for nodes in pieces:
        sl = slice(start, start + nodes.size)
        slopes[sl] = _piece_slopes(nodes, values[sl])
        start += nodes.size
    # d ln F / dx = Σ_c (f_c / F) d ln f_c / dx: consistent with the channels' slopes
    scalar_slopes = np.einsum("jc,jc->j", weights, slopes)
    return LogTable(np.concatenate(pieces), values, slopes, scalar, scalar_slopes)


@dataclass(frozen=True)
class CorrectionNodes:
    """Where the per-θ correction is anchored, and which exact folds it needs.

    Attributes
    ----------
    x : numpy.ndarray
        (m,) non-decreasing ln kT of the table knots; a break appears twice (end
        of the piece to its left, start of the piece to its right).
    left : numpy.ndarray
        (m,) bool, True for the left copy of a break.
    column : numpy.ndarray
        (m,) which exact fold gives the knot's value (both copies of a kink
        share one; a jump has one on each side).
    kt : numpy.ndarray
        (k,) kT of each exact fold: the grid's temperatures exactly (their folds
        are also the simulation means), just inside each side of a jump.
    temperature : numpy.ndarray
        (k,) grid temperature index of each fold, −1 for the extra ones.
    """

    x: np.ndarray
    left: np.ndarray
    column: np.ndarray
    kt: np.ndarray
    temperature: np.ndarray

    def pieces(self) -> list[slice]:
        """The runs of knots between breaks."""
        cuts = [0, *(i + 1 for i in range(self.x.size - 1) if self.x[i + 1] == self.x[i])]
        return [slice(a, b) for a, b in zip(cuts, [*cuts[1:], self.x.size], strict=True)]


def correction_nodes(
    temps: np.ndarray,
    x_limits: tuple[float, float],
    *,
    gap: float = DEFAULT_GAP,
    margin: float = DEFAULT_MARGIN,
    breaks: Sequence[float] = (),
    jumps: Sequence[float] = (),
    window: float = DEFAULT_WINDOW,
) -> CorrectionNodes:
    """Knots of the per-θ correction and the exact folds they need.

    Every grid temperature is a knot; so is one point *margin* (ln kT) below
    the lowest and above the highest (inside the limits), every jump in that
    range and every other break (kT) within *window* (ln kT) of a grid
    temperature: the correction's pieces end there, like the original table's.
    Within a piece, evenly spaced extra knots keep neighbours at most *gap* apart.
    """
    x_lo, x_hi = x_limits
    temps = np.asarray(temps, dtype=np.float64)
    xt = np.log(temps)
    lo = max(float(xt.min()) - margin, x_lo) if margin > 0 else float(xt.min())
    hi = min(float(xt.max()) + margin, x_hi) if margin > 0 else float(xt.max())
    jump_x = {math.log(v) for v in jumps}
    folds: list[tuple[float, int]] = [(float(t), i) for i, t in enumerate(temps)]  # (kT, temp)
    # knots as (x, order, column); order sorts the copies of a break left first
    knots = [(float(x), 1, i) for i, x in enumerate(xt)]
    for v in (lo, hi):
        if v not in xt:
            folds.append((math.exp(v), -1))
            knots.append((v, 1, len(folds) - 1))
    for kt in breaks:
        xb = math.log(kt)
        if not (lo < xb < hi) or np.any(xt == xb):
            continue
        if xb in jump_x:  # always: a jump of the ratio is never smoothed over
            folds.append((kt * (1.0 - _BREAK_EPS), -1))
            knots.append((xb, 0, len(folds) - 1))
            folds.append((kt * (1.0 + _BREAK_EPS), -1))
            knots.append((xb, 2, len(folds) - 1))
        elif np.min(np.abs(xt - xb)) <= window:
            folds.append((kt, -1))
            knots.extend([(xb, 0, len(folds) - 1), (xb, 2, len(folds) - 1)])
    knots.sort()
    filled = [knots[0]]
    for a, b in itertools.pairwise(knots):
        if b[0] > a[0]:
            k = math.ceil((b[0] - a[0]) / gap)
            for v in a[0] + (b[0] - a[0]) * np.arange(1, k) / k:
                folds.append((math.exp(v), -1))
                filled.append((float(v), 1, len(folds) - 1))
        filled.append(b)
    x, order, column = zip(*filled, strict=True)
    kt, temperature = zip(*folds, strict=True)
    return CorrectionNodes(
        x=np.array(x),
        left=np.array(order) == 0,
        column=np.array(column, dtype=np.int64),
        kt=np.array(kt),
        temperature=np.array(temperature, dtype=np.int64),
    )


def _slope_operator(nodes: CorrectionNodes) -> np.ndarray:
    """Block-diagonal map from node values to node slopes, one spline per piece."""
    m = nodes.x.size
    out = np.zeros((m, m))
    for sl in nodes.pieces():
        out[sl, sl] = _spline_slope_operator(nodes.x[sl])
    return out


def _spline_slope_operator(z: np.ndarray) -> np.ndarray:
    """Matrix W with W @ v = derivatives at the nodes z of the interpolant of values v.

    A not-a-knot cubic spline for 4 or more nodes, the parabola through 3,
    the line through 2, a constant for 1.
    """
    n = z.size
    if n == 1:
        return np.zeros((1, 1))
    if n <= 3:
        return np.array([_fd_weights(z, at) for at in z])
    h = np.diff(z)
    eye = np.eye(n)
    delta = (eye[1:] - eye[:-1]) / h[:, None]  # δ_i = (v_{i+1} - v_i) / h_i as rows over v
    a = np.zeros((n, n))
    b = np.zeros((n, n))
    for i in range(1, n - 1):
        # C2 at knot i:
        # h_i s_{i-1} + 2 (h_{i-1} + h_i) s_i + h_{i-1} s_{i+1} = 3 (h_i δ_{i-1} + h_{i-1} δ_i)
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i], 2.0 * (h[i - 1] + h[i]), h[i - 1]
        b[i] = 3.0 * (h[i] * delta[i - 1] + h[i - 1] * delta[i])
    # not-a-knot: the third derivative is continuous at the second and second-to-last knots
    d = h[0] + h[1]
    a[0, 0], a[0, 1] = h[1], d
    b[0] = ((h[0] + 2.0 * d) * h[1] * delta[0] + h[0] ** 2 * delta[1]) / d
    d = h[-1] + h[-2]
    a[-1, -2], a[-1, -1] = d, h[-2]
    b[-1] = (h[-1] ** 2 * delta[-2] + (2.0 * d + h[-1]) * h[-2] * delta[-1]) / d
    return np.linalg.solve(a, b)


def base_at_knots(base: LogTable, nodes: CorrectionNodes) -> tuple[np.ndarray, ...]:
    """The base table at the correction knots: ln f_c, d ln f_c/dx, ln F, d ln F/dx.

    The same for every θ: the engine computes them once (:func:`correction_table`'s
    *at_knots*).
    """
    from xrmod import _fit

    m, nch = nodes.x.size, base.values.shape[1]
    out = (np.empty((m, nch)), np.empty((m, nch)), np.empty(m), np.empty(m))
    _fit.base_at_knots(*base.arrays(), nodes.x, nodes.left.view(np.uint8), *out)
    return out


def correction_table(
    base: LogTable,
    nodes: CorrectionNodes,
    folded: np.ndarray,
    slope_operator: np.ndarray,
    at_knots: tuple[np.ndarray, ...] | None = None,
) -> LogTable:
    """The per-θ correction: a spline in x through ln(f′_exact / f_base) at the knots.

    The slope of the scalar at each knot is Σ_c (f′_c / F′) d ln f′_c / dx, so
    that an Asimov spectrum made at a knot is fitted exactly there.

    Parameters
    ----------
    base : LogTable
        The original-ARF table.
    nodes : CorrectionNodes
        Where the exact folds are.
    folded : numpy.ndarray
        (k, n_channel) exact expected counts with the modified ARF at ``nodes.kt``.
    slope_operator : numpy.ndarray
        (m, m) from :func:`_slope_operator` for *nodes*.
    at_knots : tuple of numpy.ndarray, optional
        :func:`base_at_knots` of *base* and *nodes*, if computed already.
    """
    from xrmod import _fit

    m, nch = nodes.x.size, folded.shape[1]
    values = np.empty((m, nch))
    slopes = np.empty((m, nch))
    scalar = np.empty(m)
    scalar_slopes = np.empty(m)
    _fit.correction_from_base(
        *(base_at_knots(base, nodes) if at_knots is None else at_knots),
        np.ascontiguousarray(folded),
        nodes.column,
        slope_operator,
        values,
        slopes,
        scalar,
        scalar_slopes,
        _FLOOR,
    )
    return LogTable(nodes.x, values, slopes, scalar, scalar_slopes)


class _Theta(NamedTuple):
    """What the fits of one θ's points use: the T1′ fit tables, the exact folds at the knots."""

    tables: _fit.Tables
    folded: np.ndarray


class NativeEngine(Engine[_Theta]):
    """Native engine (see the module docstring).

    Parameters
    ----------
    spacing : float
        Largest knot spacing of the original-ARF table in ln kT.
    gap : float
        Largest gap between the nodes of the per-θ correction in ln kT.
    margin : float
        Extra correction nodes this far below and above the grid's temperatures.
    window : float
        Breaks of the model within this distance of a grid temperature get
        correction nodes.
    linear : bool
        Fold once for all values of a grid axis the family is affine in
        (:meth:`_folded_modified`); False folds every θ's ARF itself.
    """

    name = "native"

    def __init__(
        self,
        spacing: float = DEFAULT_SPACING,
        gap: float = DEFAULT_GAP,
        margin: float = DEFAULT_MARGIN,
        window: float = DEFAULT_WINDOW,
        linear: bool = True,
    ):
        self.spacing = float(spacing)
        self.gap = float(gap)
        self.margin = float(margin)
        self.window = float(window)
        self.linear = bool(linear)
        #: Wall seconds spent per phase (prepare; per θ: arf, fold, correction; per
        #: point: simulate and fit, or only fit where the compiled loop draws the
        #: counts too), for profiling.
        self.timers: dict[str, float] = {}

    # ------------------------------------------------------------------ prepare

    def prepare(self, job: Job) -> None:
        """Restrict the response, tabulate the source with the original ARF."""
        start = time.perf_counter()
        inputs = self._bind(job)
        fold_matrix = inputs.fold_matrix  # as the reference
        self._indptr = np.ascontiguousarray(fold_matrix.indptr, dtype=np.int32)
        self._indices = np.ascontiguousarray(fold_matrix.indices, dtype=np.int32)
        self._data = np.ascontiguousarray(fold_matrix.data, dtype=np.float64)
        if self._indices.size and not (
            0 <= self._indices.min() and self._indices.max() < fold_matrix.shape[1]
        ):  # the fold kernel trusts them
            raise ValueError("band-restricted RMF has column indices out of range")
        self._n_channel = inputs.n_band
        source = BandSource.from_job(job)
        model = source.model
        self._x_limits = source.fit_limits(inputs, source_path=job.config.source_path)

        arf_rows = inputs.arf[inputs.rows]
        temps = inputs.temperatures
        self._x_true = np.log(temps)
        self._base = base_table(
            source.spectra,
            lambda s: self._fold(arf_rows, s),
            self._x_limits,
            breaks=model.kt_breaks,
            spacing=self.spacing,
        )
        # correction knots: the grid's temperatures (their exact folds are also the
        # simulation means), a margin, the breaks near them, gaps filled
        nodes = correction_nodes(
            temps,
            self._x_limits,
            gap=self.gap,
            margin=self.margin,
            breaks=model.kt_breaks,
            jumps=model.kt_jumps,
            window=self.window,
        )
        self._nodes = nodes
        self._node_flux = source.spectra(nodes.kt)  # (k, n_energy)
        self._t_node = np.array(
            [int(np.flatnonzero(nodes.temperature == t)[0]) for t in range(temps.size)]
        )
        self._slope_operator = _slope_operator(nodes)
        self._base_at_knots = base_at_knots(self._base, nodes)
        self._jumps = np.log(np.asarray(model.kt_jumps, dtype=np.float64))
        # the original ARF gets the same correction at the same knots: its model is
        # exact at the grid's temperatures too, and a θ that leaves the ARF as it
        # is fits both spectra with the very same tables (identical results)
        self._arf_rows = arf_rows
        self._folded_original = self._fold(arf_rows, self._node_flux)
        self._original = self._tables(self._folded_original)
        self._cache: tuple[int, _Theta] | None = None  # the last θ's tables
        # a grid axis the family is affine in: F(A g) of the last θ's other parameters
        linear = job.family.linear
        axes = dict(job.grid.axes)
        use = self.linear and linear in axes and axes[linear].size > 1
        self._linear = linear if use else None
        # the θs of one F(A g) are consecutive units when the linear axis is the last
        last = job.grid.axis_names[-1]
        self.units_per_group = axes[last].size if use and linear == last else 1
        self._linear_cache: tuple[tuple[float, ...], np.ndarray] | None = None
        self._out = np.empty(5)
        self.timers = dict.fromkeys(
            ("prepare", "arf", "fold", "correction", "simulate", "fit"), 0.0
        )
        self.timers["prepare"] = time.perf_counter() - start
        log.debug(
            "native engine: %d band channels, %d energies, %d table knots, %d exact folds "
            "per θ, prepared in %.3f s",
            self._n_channel,
            inputs.rows.size,
            self._base.knots.size,
            nodes.kt.size,
            self.timers["prepare"],
        )

    def provenance(self) -> dict[str, str]:
        """The XSPEC model library the source spectra came from (:mod:`xrmod.xspec_library`)."""
        from xrmod.xspec_library import provenance

        return provenance()

    def _fold(self, arf_rows: np.ndarray, flux: np.ndarray) -> np.ndarray:
        """Expected counts exposure · Rᵀ(A ⊙ S) of the rows S of *flux*, in one product.

        Returns (n, n_channel). Each column is bit-identical to the reference's fold.
        """
        from xrmod import _fit

        n = flux.shape[0]
        columns = np.zeros((arf_rows.size, -(-n // 8) * 8))  # padded: blocks of 8 run fastest
        # the same products as the reference's arf * flux, so each column is bit-identical
        np.multiply(arf_rows[:, None], flux.T, out=columns[:, :n])
        folded = np.empty((self._n_channel, columns.shape[1]))
        _fit.fold(self._indptr, self._indices, self._data, columns, folded)
        return np.ascontiguousarray(self.inputs.exposure * folded[:, :n].T)

    def _modified(self, unit: WorkUnit) -> tuple[Status, _Theta | None]:
        """Status of θ's ARF, and its fit tables and exact folds at the nodes (cached per θ)."""
        if self._cache is not None and self._cache[0] == unit.theta:
            return Status.OK, self._cache[1]
        timers = self.timers
        t0 = time.perf_counter()
        arf_status, arf = self._modified_arf(unit)
        t1 = time.perf_counter()
        timers["arf"] += t1 - t0
        if arf is None:
            return arf_status, None
        arf_rows = arf[self.inputs.rows]
        if np.array_equal(arf_rows, self._arf_rows):
            theta = _Theta(self._original, self._folded_original)
        else:
            folded = self._folded_modified(unit.theta, arf_rows)
            t2 = time.perf_counter()
            timers["fold"] += t2 - t1
            theta = _Theta(self._tables(folded), folded)
            timers["correction"] += time.perf_counter() - t2
        self._cache = (unit.theta, theta)
        return Status.OK, theta

    def _folded_modified(self, theta: int, arf_rows: np.ndarray) -> np.ndarray:
        """θ's exact folds at the correction knots: one product, or none along a linear axis.

        Where θ's family is affine in a grid axis p (:attr:`ModifierFamily.linear`),
        A′ = A + p·A g, so its folds are F(A) + p·F(A g): F(A g) is folded once
        for the θs that differ only in p (the last one kept) and serves them all.
        The sum differs from a direct fold of A′ by rounding only (~1e-16 relative).
        """
        linear = self._linear
        if linear is None:
            return self._fold(arf_rows, self._node_flux)
        params = self._job.grid.theta_parameters(np.array([theta]))
        p = float(params[linear][0])
        key = tuple(float(v[0]) for name, v in params.items() if name != linear)
        if self._linear_cache is None or self._linear_cache[0] != key:
            params[linear] = np.ones(1)  # A g = A′(p = 1) − A
            unit_arf = self._job.family.apply(self.inputs.energies, self.inputs.arf, params)
            shape = unit_arf.values[0][self.inputs.rows] - self._arf_rows
            self._linear_cache = (key, self._fold(shape, self._node_flux))
        return self._folded_original + p * self._linear_cache[1]

    def _tables(self, folded: np.ndarray) -> _fit.Tables:
        """Fit tables for one ARF from its exact folds at the correction knots."""
        from xrmod import _fit

        corr = correction_table(
            self._base, self._nodes, folded, self._slope_operator, self._base_at_knots
        )
        return _fit.Tables(
            *self._base.arrays(),
            correction=corr.arrays(),
            jumps=self._jumps,
            jump_offset=math.log1p(_BREAK_EPS),
        )

    # ------------------------------------------------------------------ run

    def _fit(
        self, tables: _fit.Tables, counts: np.ndarray, bkg: np.ndarray | None, t: int
    ) -> tuple[np.ndarray, Status]:
        x_lo, x_hi = self._x_limits
        background = self.inputs.background
        alpha = None if bkg is None or background is None else background.alpha
        code = tables.fit(
            counts,
            float(self._x_true[t]),
            x_lo,
            x_hi,
            self.inputs.error_delta,
            self._out,
            bkg,
            alpha,
        )
        return self._out.copy(), Status(code)

    def _fit_points(self, state: _Theta, result: UnitResult) -> None:
        """Simulate and fit the unit's points in one compiled loop (no background).

        :func:`xrmod._fit.fit_points` draws each point's counts as
        :func:`~xrmod.engines.base.simulate` does (the same numbers) and fits
        them as :meth:`_fit_point` does; with a background every point goes
        through :meth:`_fit_point`.
        """
        if self.inputs.background is not None:
            super()._fit_points(state, result)
            return
        from xrmod import _fit

        inputs = self.inputs
        x_lo, x_hi = self._x_limits
        extras = np.empty((result.stop - result.start, len(EXTRAS)))
        t0 = time.perf_counter()
        _fit.fit_points(
            self._original,
            state.tables,
            state.folded,
            self._t_node,
            self._x_true,
            inputs.norm,
            inputs.seed,
            result.start,
            inputs.asimov,
            x_lo,
            x_hi,
            inputs.error_delta,
            int(Status.NO_COUNTS),
            result.results,
            result.results_modified,
            result.status,
            result.status_modified,
            extras,
        )
        self.timers["fit"] += time.perf_counter() - t0
        for k, name in enumerate(EXTRAS):
            result.extras[name][:] = extras[:, k]

    def _fit_point(self, state: _Theta, flat: int) -> PointResult:
        """Simulate point *flat* from θ's exact fold, then fit it with both tables."""
        timers = self.timers
        inputs = self.inputs
        t = self._job.grid.point_temperature(flat)
        t1 = time.perf_counter()
        counts, bkg = inputs.simulate(inputs.norm * state.folded[self._t_node[t]], flat)
        total = counts.sum()
        t2 = time.perf_counter()
        timers["simulate"] += t2 - t1
        if total <= 0:
            return PointResult.failed(Status.NO_COUNTS, counts=total)
        (lo0, kt0, hi0, n0, c0), s0 = self._fit(self._original, counts, bkg, t)
        (lo1, kt1, hi1, n1, c1), s1 = self._fit(state.tables, counts, bkg, t)
        timers["fit"] += time.perf_counter() - t2
        extras = {"norm": n0, "norm_modified": n1, "cstat": c0, "cstat_modified": c1}
        return PointResult(s0, s1, (lo0, kt0, hi0), (lo1, kt1, hi1), {**extras, "counts": total})
