"""``xrmod infer --plot``: the posterior of θ and what it predicts, in one figure.

For one model of an :class:`~xrmod.analysis.inference.InferenceResult` (by
default the best-ranked), the figure holds, side by side:

- **left**, the corner plot of the posterior samples (:func:`corner.corner`):
  the marginal histograms with their 16 %, 50 % and 84 % quantiles (dashed,
  and in the titles), the pairs with contours holding 68 % and 95 % of the
  posterior, the best θ (the maximum of the posterior) as red lines, and
  the edges of the prior (often the grid's) where the posterior reaches them;
- **right**, one panel per band of the model: T_obs / T_ref against T_ref
  (log scale, keV) for the observations of that band, with their errors
  (asymmetric in T_obs, T_ref's horizontal), the model's T1 / kT_true over
  the posterior (median, 68 % and 95 % bands; :meth:`ModelResult.curve`),
  the curve at the best θ, and the line 1 (no distortion); observations the
  model does not explain (posterior-predictive p-value below 0.01 or above
  0.99) are ringed and named;
- **below them**, the fit at the best θ (χ², p-value), the ranking of the
  models when there are several (ln Z or BIC, ln B against the best and
  its wording) and the comparison with no distortion.

With one free parameter the corner plot is its histogram; with none (every
axis fixed) the figure holds the predictive panels alone.

The figure is a :class:`matplotlib.figure.Figure` drawn on the Agg canvas,
as in :mod:`xrmod.analysis.plot`, never a pyplot figure: corner, given it,
draws into it (corner imports pyplot itself, but nothing is registered with
pyplot's figure manager, so no window and no global state).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.analysis.plot import DPI, FORMATS, _log_scale
from xrmod.errors import InputError, XrmodError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from xrmod.analysis.inference import InferenceResult, ModelResult
    from xrmod.analysis.observations import Observations

__all__ = ["check_output", "inference_figure", "plot_inference"]

log = logging.getLogger(__name__)

#: Credible levels of the corner plot's contours and of the predictive bands.
CONTOURS = (0.68, 0.95)
#: Quantiles drawn in the marginal histograms and written in their titles.
QUANTILES = (0.16, 0.5, 0.84)
#: Observations whose posterior-predictive p-value is outside [P_FLAG, 1 − P_FLAG] are named.
P_FLAG = 0.01
#: Bins of the corner plot's histograms (two of them outside the samples' range).
BINS = 20
#: Points along kT_true at which the model's curve is drawn.
CURVE_POINTS = 160

#: Colours: the posterior (corner plot, predictive bands) and the best fit.
POSTERIOR = "#2c6fad"
BEST = "#d62728"

# Layout, inches.
_HEIGHT = 7.0  # the figure, one band
_PANEL_HEIGHT = 2.7  # per band beyond the first
_RIGHT_WIDTH = 6.4  # the predictive column
_TOP = 0.75  # room for the figure's title and the first row's titles
_LINE = 0.19  # one line of the text box
_MAX_PANEL = 3.4  # the largest corner panel (one parameter)


def check_output(path: str | os.PathLike) -> None:
    """Raise InputError unless *path*'s suffix names a format (``xrmod infer`` checks first)."""
    suffix = Path(path).suffix
    if suffix.lower() not in FORMATS:
        shown = f"suffix {suffix!r}" if suffix else "no suffix"
        raise InputError(
            f"{path}: {shown}; the inference plot is written as "
            f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}"
        )


def plot_inference(result: InferenceResult, path: str | os.PathLike, *, model: int = 0) -> str:
    """Write the corner plot and the predictive of one model of *result* to *path*.

    Parameters
    ----------
    result : InferenceResult
        What :func:`xrmod.analysis.inference.infer` returned.
    path : str or os.PathLike
        A ``.png``, ``.pdf`` or ``.svg`` file (the suffix picks the format).
    model : int
        Index into ``result.models`` (best first): 0 draws the best-ranked.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    xrmod.errors.InputError
        An unknown suffix, a model index out of range, a file that cannot be written.
    xrmod.errors.XrmodError
        matplotlib or corner is not installed (the ``infer`` extra).

    Examples
    --------
    >>> result = infer(["tilt.h5"], "clusters.csv")  # doctest: +SKIP
    >>> plot_inference(result, "posterior.png")  # doctest: +SKIP
    """
    check_output(path)
    fig = inference_figure(result, model=model)
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    log.debug("wrote %s", path)
    return os.fspath(path)


def inference_figure(result: InferenceResult, *, model: int = 0) -> Figure:
    """The figure :func:`plot_inference` writes, not saved (its artists can be inspected).

    The corner plot's axes are in ``fig.subfigs[0]`` (when the model has free
    parameters); the predictive panels have the gid ``predictive-<band>``
    and the text box ``summary``.
    """
    _require()
    from matplotlib.figure import Figure

    count = len(result.models)
    if not -count <= model < count:
        raise InputError(
            f"model {model}: the result has {count} model(s), 0 (the best) to {count - 1}"
        )
    rank = model % count
    m = result.models[rank]
    k = len(m.names)
    rows = _band_rows(m)
    lines = _summary_lines(result, m)
    box = _LINE * len(lines) + 0.3
    height = max(_HEIGHT, _TOP + 0.85 + _PANEL_HEIGHT * len(rows) + box)
    corner_width = _corner_width(k, height)
    fig = Figure(figsize=(corner_width + _RIGHT_WIDTH, height))
    if k:
        left, right = fig.subfigures(1, 2, width_ratios=[corner_width, _RIGHT_WIDTH])
        _corner(left, (corner_width, height), m)
    else:
        right = fig.subfigures(1, 1)
    _predictive(right, (_RIGHT_WIDTH, height), m, rows, box)
    _summary(right, (_RIGHT_WIDTH, height), lines, box)
    ranked = f" (ranked {rank + 1})" if rank else ""
    n = len(m.likelihood.observations)
    fig.suptitle(
        f"{m.family} family{ranked}: {', '.join(os.path.basename(p) for p in m.libraries)}"
        f" \N{EM DASH} {n} observation{'s' * (n != 1)} from "
        f"{os.path.basename(m.likelihood.observations.path)}",
        fontsize="large",
        y=1.0 - 0.12 / height,
        va="top",
    )
    return fig


def _require() -> None:
    missing = [m for m in ("matplotlib", "corner") if importlib.util.find_spec(m) is None]
    if missing:
        raise XrmodError(
            f"the inference plot needs {' and '.join(missing)}: pip install 'xrmod[infer]'"
        )


# --------------------------------------------------------------------------- corner
def _corner_width(k: int, height: float) -> float:
    """Width of the corner plot's subfigure: square panels filling *height*."""
    if k == 0:
        return 0.0
    panel = _corner_panel(k, height)
    return _corner_margin(panel) + panel * (k + 0.05 * (k - 1)) + 0.25


def _corner_panel(k: int, height: float) -> float:
    """Side of one corner panel (inches): the grid and its margin fill *height*."""
    panel = (height - _TOP - 0.35) / (k + 0.05 * (k - 1) + 0.3)
    return min(panel, _MAX_PANEL) if k == 1 else panel


def _labels(m: ModelResult) -> list[str]:
    return [f"{p.name} ({p.units})" if p.units else p.name for p in m.likelihood.parameters]


def _title_formats(samples: np.ndarray) -> list[str]:
    """Per parameter, a format showing the smaller of the 68 % half-widths to 2 digits."""
    out = []
    for x in samples.T:
        lo, mid, hi = np.quantile(x, QUANTILES)
        err = min(mid - lo, hi - mid)
        if not err > 0:
            out.append(".3g")
            continue
        decimals = max(0, 1 - math.floor(math.log10(err)))
        out.append(f".{decimals}f")
    return out


def _ranges(m: ModelResult) -> list[tuple[float, float]]:
    """Each axis over the samples and the best θ, and one empty bin on either side.

    An end within a bin of the prior's edge moves onto it, so that the edge
    is a bin edge: a posterior cut by the prior ends in a full bin, not in
    one half outside the prior.
    """
    out = []
    for j, p in enumerate(m.likelihood.parameters):
        x = m.samples[:, j]
        lo, hi = min(float(x.min()), float(m.best[j])), max(float(x.max()), float(m.best[j]))
        if hi <= lo:  # every sample the same value: a window of a percent of the prior
            half = 0.01 * (p.hi - p.lo) or 0.01 * max(abs(lo), 1.0)
            lo, hi = lo - half, hi + half
        width = (hi - lo) / (BINS - 2)
        lo = p.lo if lo - p.lo < width else lo
        hi = p.hi if p.hi - hi < width else hi
        width = (hi - lo) / (BINS - 2)
        out.append((lo - width, hi + width))
    return out


def _corner(sub: SubFigure, size: tuple[float, float], m: ModelResult) -> None:
    """The corner plot of *m*'s samples in *sub* (*size* inches), the best θ, a legend."""
    import corner
    from matplotlib.lines import Line2D

    k = len(m.names)
    sub_width, height = size
    panel = _corner_panel(k, height)
    corner.corner(
        m.samples,
        fig=sub,
        labels=_labels(m),
        titles=list(m.names),
        show_titles=True,
        title_fmt=_title_formats(m.samples),
        title_kwargs={"fontsize": "medium"},
        label_kwargs={"fontsize": "medium"},
        quantiles=list(QUANTILES),
        levels=CONTOURS,
        range=_ranges(m),
        bins=BINS,
        smooth=1.0,
        color=POSTERIOR,
        # corner 2.3 cannot draw truths on its 1 x 1 figure: drawn below
        truths=list(m.best) if k > 1 else None,
        truth_color=BEST,
        plot_datapoints=True,
        data_kwargs={"alpha": 0.15, "ms": 1.5},
        max_n_ticks=4,
    )
    if k == 1:
        sub.axes[0].axvline(m.best[0], color=BEST)
    margin = _corner_margin(panel)
    grid = panel * (k + 0.05 * (k - 1))
    top = height - _TOP
    sub.subplots_adjust(
        left=margin / sub_width,
        right=(margin + grid) / sub_width,
        bottom=(top - grid) / height,
        top=top / height,
        wspace=0.05,
        hspace=0.05,
    )
    edges = _prior_edges(sub, m)
    handles = [
        Line2D(
            [],
            [],
            color=BEST,
            linewidth=1.5,
            marker="s" if k > 1 else None,
            label="best fit (max. posterior)",
        ),
        Line2D([], [], color=POSTERIOR, linestyle="--", label="16, 50, 84 % quantiles"),
    ]
    if k > 1:
        handles.append(Line2D([], [], color=POSTERIOR, label="68 %, 95 % contours"))
    if edges:
        handles.append(Line2D([], [], **_EDGE, label="edge of the prior"))
    legend = {"fontsize": "small", "frameon": False, "title": "posterior of θ"}
    if k > 1:  # in the empty upper-right triangle
        x = (margin + grid) / sub_width
        sub.legend(handles=handles, loc="upper right", bbox_to_anchor=(x, top / height), **legend)
    else:  # below the histogram and its axis label
        below = (top - grid - 0.3 * panel - 0.45) / height
        sub.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.03, below), **legend)


#: How a prior's edge is drawn in the corner plot.
_EDGE = {"color": "0.45", "linestyle": "-.", "linewidth": 1.0}


def _corner_margin(panel: float) -> float:
    """Left and bottom margin of the corner plot: its axis labels sit 0.3 panel out."""
    return 0.3 * panel + 0.35


def _prior_edges(sub: SubFigure, m: ModelResult) -> bool:
    """Draw the prior's bounds that fall inside the corner plot's ranges; whether any did.

    A posterior piled against a bound is cut by the prior (often the grid's
    edge): the bound is then inside the plotted range.
    """
    k = len(m.names)
    axes = np.array(sub.axes).reshape(k, k)
    drawn = False
    for j, p in enumerate(m.likelihood.parameters):
        for bound in (p.lo, p.hi):
            lo, hi = axes[j, j].get_xlim()
            if not lo <= bound <= hi:
                continue
            drawn = True
            for row in range(j, k):  # the column of parameter j
                axes[row, j].axvline(bound, zorder=1, **_EDGE)
            for col in range(j):  # the row of parameter j
                axes[j, col].axhline(bound, zorder=1, **_EDGE)
    return drawn


# --------------------------------------------------------------------------- predictive
def _band_rows(m: ModelResult) -> list[np.ndarray]:
    """Per library (band) of *m*, the indices of its observations."""
    obs = m.likelihood.observations
    everything = np.arange(len(obs))
    if len(m.emulators) <= 1 or not obs.has_bands:
        return [everything]
    out = []
    for band in m.bands:
        if band is None:
            out.append(everything)
        else:
            out.append(np.flatnonzero(np.all(np.isclose(obs.band, band), axis=1)))
    return out


def _band_text(band: Any) -> str:
    if band is None:
        return ""
    return f"band {band[0]:g}\N{EN DASH}{band[1]:g} keV"


def _curve_grid(obs: Observations, rows: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """kT_true from a little below to a little above the rows' T_ref, inside the library."""
    lo_ref = obs.T_ref[rows] - obs.T_ref_err[rows]
    hi_ref = obs.T_ref[rows] + obs.T_ref_err[rows]
    lo = max(float(bounds[0]), float(np.min(lo_ref)) / 1.12) if rows.size else bounds[0]
    hi = min(float(bounds[1]), float(np.max(hi_ref)) * 1.12) if rows.size else bounds[1]
    return np.geomspace(lo, hi, CURVE_POINTS)


def _unexplained(m: ModelResult) -> np.ndarray:
    """Per observation, whether its posterior-predictive p-value is beyond :data:`P_FLAG`.

    None are flagged when the posterior has fewer than 100 draws (no free
    parameter: one draw, whose p-values are 0 or 1).
    """
    n = len(m.likelihood.observations)
    if m.samples.shape[0] < 100:
        return np.zeros(n, dtype=bool)
    p = np.array([row["p_value"] for row in m.predictive()])
    return (p < P_FLAG) | (p > 1 - P_FLAG)


def _predictive(
    sub: SubFigure, size: tuple[float, float], m: ModelResult, rows: list[np.ndarray], box: float
) -> None:
    """One panel per band in *sub* (*size* inches): the observations and T1 / kT_true."""
    sub_width, height = size
    left, right = 0.85, 0.25
    bottom = box + 0.65  # the text box, the last panel's axis label
    gap = 0.75  # between panels: an axis' numbers and the next title
    n = len(rows)
    panel = (height - _TOP - bottom - gap * (n - 1)) / n
    flagged = _unexplained(m)
    for b, idx in enumerate(rows):
        y0 = height - _TOP - (b + 1) * panel - b * gap
        ax = sub.add_axes(
            (left / sub_width, y0 / height, 1 - (left + right) / sub_width, panel / height)
        )
        ax.set_gid(f"predictive-{b}")
        _draw_panel(ax, m, b, idx, flagged)
        title = _band_text(m.bands[b] if b < len(m.bands) else None)
        if n > 1:
            title = f"{title}: {os.path.basename(m.libraries[b])}"
        count = f"{idx.size} observation{'s' * (idx.size != 1)}"
        ax.set_title(f"{title} ({count})" if title else count, fontsize="medium")
        if b == 0:
            ax.legend(
                handles=_legend(fixed=not m.names, flagged=bool(flagged.any())),
                fontsize="small",
                loc="best",
                framealpha=0.85,
            )
        if b == n - 1:
            ax.set_xlabel("T_ref (keV); model: kT_true")
        ax.set_ylabel("T_obs / T_ref; model: T1 / kT_true")


def _legend(*, fixed: bool, flagged: bool) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    dots = Line2D([], [], color="k", marker="o", markersize=4, linestyle="", label="observations")
    if fixed:
        model = [Line2D([], [], color=BEST, linestyle="--", label="model (every axis fixed)")]
    else:
        model = [
            Patch(color=POSTERIOR, alpha=0.45, label="model, 68 % of the posterior"),
            Patch(color=POSTERIOR, alpha=0.2, label="model, 95 %"),
            Line2D([], [], color=POSTERIOR, label="model, posterior median"),
            Line2D([], [], color=BEST, linestyle="--", label="model at the best fit"),
        ]
    handles = [dots, *model, Line2D([], [], color="0.3", linestyle=":", label="no distortion")]
    if flagged:
        label = f"not explained (predictive p < {P_FLAG:g} or > {1 - P_FLAG:g})"
        handles.append(Line2D([], [], linestyle="", label=label, **_RING))
    return handles


#: How an observation the model does not explain is ringed.
_RING = {"marker": "o", "markersize": 9, "markerfacecolor": "none", "markeredgecolor": BEST}


def _draw_panel(ax: Axes, m: ModelResult, b: int, idx: np.ndarray, flagged: np.ndarray) -> None:
    """Observations *idx* of band *b* and the model's curve on *ax*."""
    obs = m.likelihood.observations
    kT = _curve_grid(obs, idx, m.emulators[b].bounds["kT_true"])
    with warnings.catch_warnings():
        # a kT where every draw falls next to a failed node: NaN, a gap in the band
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        c = m.curve(kT, band=b)
    ax.axhline(1.0, color="0.3", linewidth=0.9, linestyle=":", zorder=1, label="no distortion")
    if m.names:
        for level, alpha in (("95", 0.2), ("68", 0.45)):
            ax.fill_between(
                kT,
                c[f"lo{level}"],
                c[f"hi{level}"],
                color=POSTERIOR,
                alpha=alpha,
                linewidth=0,
                zorder=2,
                label=f"{level} %",
            )
        ax.plot(kT, c["median"], color=POSTERIOR, linewidth=1.6, zorder=3, label="median")
    ax.plot(kT, c["best"], color=BEST, linewidth=1.3, linestyle="--", zorder=4, label="best")
    t_ref = obs.T_ref[idx]
    ax.errorbar(
        t_ref,
        obs.T_obs[idx] / t_ref,
        yerr=np.vstack([obs.sigma_lo[idx], obs.sigma_hi[idx]]) / t_ref,
        xerr=obs.T_ref_err[idx],
        fmt="o",
        color="k",
        markersize=4,
        elinewidth=1.0,
        capsize=2,
        zorder=5,
        label="observations",
    )
    ringed = idx[flagged[idx]]
    if ringed.size:
        ratio = obs.T_obs[ringed] / obs.T_ref[ringed]
        ax.plot(obs.T_ref[ringed], ratio, linestyle="", zorder=6, label="not explained", **_RING)
        for i, y in zip(ringed, ratio, strict=True):
            ax.annotate(
                obs.names[i],
                (obs.T_ref[i], y),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize="x-small",
                color=BEST,
            )
    _log_scale(ax, "x")
    ax.grid(True, which="major", color="0.9", linewidth=0.6, zorder=0)


# --------------------------------------------------------------------------- text
#: Marks the model drawn in the ranking.
_SHOWN = "\N{BLACK RIGHT-POINTING TRIANGLE}"


def _summary_lines(result: InferenceResult, m: ModelResult) -> list[str]:
    """The fit at the best θ, the ranking of several models, and no distortion."""
    gof = m.goodness_of_fit()
    p = f", p = {gof['p_value']:.3g}" if gof.get("p_value") is not None else ""
    theta = "at the best θ" if m.names else "(no free parameter)"
    lines = [f"χ² = {gof['chi2']:.2f} for {gof['dof']} dof{p} {theta}"]
    if m.evidence is not None:
        lines[0] += f"; ln Z = {m.evidence['log_z']:.2f} ± {m.evidence['log_z_err']:.2f}"
    fixed = _fixed_text(m)
    if fixed:
        lines.append(f"fixed: {fixed}")
    ranking = result.ranking()
    if len(ranking) > 1:
        by_evidence = ranking[0].get("criterion") == "evidence"
        lines.append(
            f"ranking by {'evidence' if by_evidence else 'BIC'} "
            f"(ln B: the best against each; Trotta's scale; {_SHOWN} shown):"
        )
        names = [
            f"{r['family']} ({', '.join(os.path.basename(p) for p in r['libraries'])})"
            for r in ranking
        ]
        wide = min(max(len(s) for s in names), 34)
        for i, (r, name) in enumerate(zip(ranking, names, strict=True)):
            shown = _SHOWN if r["libraries"] == m.libraries else " "
            if by_evidence:
                score = f"ln Z = {r['log_evidence']:8.2f}"
            else:
                score = f"BIC = {r['bic']:8.2f}"
            rel = "" if i == 0 else f"ln B = {r['log_bayes_factor_best']:.2f}"
            short = name if len(name) <= wide else name[: wide - 1] + "\N{HORIZONTAL ELLIPSIS}"
            lines.append(f"{shown}{i + 1}. {short:<{wide}}  {score}  {rel:<12} {r['strength']}")
    base = result.baseline
    if base.get("log_bayes_factor_best") is not None:
        lines.append(
            f"against no distortion (T_obs = T_ref): ln B = {base['log_bayes_factor_best']:.2f}"
            f" ({base['strength']}); χ² = {base['chi2']:.1f} for {base['dof']} dof"
        )
    return lines


def _fixed_text(m: ModelResult) -> str:
    """``pivot = 3 keV``: the modifier axes held fixed (not sampled)."""
    like = m.likelihood
    if not m.emulators or not like.axis_names:
        return ""
    values = like.theta(np.asarray(m.best, dtype=np.float64)[None, :])[0]
    units = {a.name: a.units for a in m.emulators[0].axes}
    parts = []
    for name, value in zip(like.axis_names, values, strict=True):
        if name not in m.names:
            unit = f" {units[name]}" if units.get(name) else ""
            parts.append(f"{name} = {value:.4g}{unit}")
    return ", ".join(parts)


def _summary(sub: SubFigure, size: tuple[float, float], lines: list[str], box: float) -> None:
    """The text box under the predictive panels of *sub* (*size* inches)."""
    sub_width, height = size
    ax = sub.add_axes((0.1 / sub_width, 0.08 / height, 1 - 0.2 / sub_width, box / height))
    ax.set_gid("summary")
    ax.set_axis_off()
    ax.text(
        0.0,
        1.0,
        "\n".join(lines),
        transform=ax.transAxes,
        ha="left",
        va="top",
        family="monospace",
        fontsize="small",
        linespacing=1.35,
    )
