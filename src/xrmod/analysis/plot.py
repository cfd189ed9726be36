"""``xrmod plot``: the bias map, the bias curves and the status map of a library.

Three figures answer the questions a library is built for:

- **bias map**: T1 / kT_true over two modifier axes (``x``, ``y``) at one
  true temperature and fixed values of the other axes, on a diverging colour
  scale centred on 1 (red: the nominal ARF makes clusters look hotter), with
  labelled contours; cells whose T1 fit failed (NaN) are hatched, not coloured;
- **bias curves**: T1 / kT_true against kT_true for 3–5 values of ``x``
  spread over its grid, the fitted bounds T1_lo .. T1_hi as a band, T1′
  (the fit with the modified ARF, which should sit at 1) dashed;
- **status map**: for T1 and T1′, the status code (:class:`xrmod.status.Status`)
  over the map's two axes: the most severe over every kT_true (or at ``kT``
  when one is asked for), with the number of points not OK written in the cell.

How the slice is chosen (the same rule for every figure):

- ``x``, ``y``: the first two modifier axes with more than one value, in
  library order; with only one such axis, ``y`` is ``kT_true``;
- an axis that no figure varies takes its value from ``at``; by default the
  middle of its grid (``values[(n - 1) // 2]``), except for a *strength* axis,
  one whose value 0 is no distortion at all (``amp``, ``index``, ``slope``,
  ``depth``: found by evaluating the family), which takes the value of largest
  magnitude whose map is mostly computed (at 0 the map would be flat, a value
  where every point failed would be blank);
- ``kT``: the middle temperature of the grid;
- a ``realization`` axis is averaged over (the titles say so) unless ``at``
  selects one (``at={"realization": 0}``);
- a value that is not on the grid is taken to be the nearest grid value when
  within 5 % of the grid spacing, and refused otherwise, with the grid's values.

The maps draw one cell per grid point, to scale (kT_true on a log scale), except
for an axis whose grid steps differ by more than a factor :data:`UNEVEN`
(``amp = [-1.5, -0.2, 0, 0.2]``): its cells are then equal, with ticks at its values.

matplotlib is imported only when a figure is drawn, through
:class:`matplotlib.figure.Figure` (no pyplot, no GUI backend: writing a file
works anywhere).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.errors import InputError, XrmodError
from xrmod.status import Status

if TYPE_CHECKING:
    import xarray
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FORMATS",
    "KINDS",
    "View",
    "bias_curves",
    "bias_map",
    "choose_view",
    "contour_levels",
    "parse_at",
    "plot_library",
    "status_map",
]

log = logging.getLogger(__name__)

#: What ``--kind`` draws.
KINDS = ("all", "map", "curves", "status")
#: Output formats, chosen by the file's suffix.
FORMATS = (".png", ".pdf", ".svg")
#: Resolution of PNG output, dots per inch.
DPI = 150
#: Most curves drawn in the bias-curves figure.
MAX_CURVES = 5
#: A value within this fraction of the grid spacing of a grid value is that value.
SNAP = 0.05
#: A strength value is preferred when at least this fraction of its map is computed.
COMPUTED_ENOUGH = 0.5
#: Status cells labelled with their count of points not OK, at most.
MAX_LABELLED_CELLS = 400

KT = "kT_true"
REALIZATION = "realization"

#: Colour of each status code in the status map; codes not listed are grey.
STATUS_COLOURS = {
    Status.OK: "#e5f5e0",
    Status.NOT_COMPUTED: "#f7f7f7",
    Status.BOUND_AT_LIMIT: "#fee08b",
    Status.MODEL_JUMP: "#92c5de",
    Status.FIT_FAILED: "#f46d43",
    Status.NO_COUNTS: "#8c510a",
    Status.ARF_NEGATIVE: "#762a83",
    Status.ARF_NONFINITE: "#c51b7d",
    Status.ERROR: "#252525",
}
#: Which code a cell of several shows: the first of these it holds.
STATUS_ORDER = (
    Status.ERROR,
    Status.ARF_NEGATIVE,
    Status.ARF_NONFINITE,
    Status.NO_COUNTS,
    Status.FIT_FAILED,
    Status.MODEL_JUMP,
    Status.BOUND_AT_LIMIT,
    Status.NOT_COMPUTED,
    Status.OK,
)
_OTHER_COLOUR = "#969696"
#: How the bias map labels its hatched cells (T1 NaN).
_FAILED = "no T1 (failed: see the status map)"


# --------------------------------------------------------------------------- the slice
@dataclass(frozen=True)
class View:
    """Which slice of a library the figures show (what :func:`choose_view` resolved).

    Attributes
    ----------
    x, y : str
        The map's axes (``y`` may be ``kT_true``); the curves vary ``x``.
    fixed : dict
        Grid index of every other modifier axis (and of ``realization`` when
        one is selected).
    kT_index : int
        Grid index of the map's temperature (unused when ``y`` is ``kT_true``).
    kT_chosen : bool
        Whether the temperature was asked for (the status map then shows it
        alone rather than the worst over every temperature).
    realizations : int
        How many realizations are averaged (1: none, or one selected).
    """

    x: str
    y: str
    fixed: dict[str, int] = field(default_factory=dict)
    kT_index: int = 0
    kT_chosen: bool = False
    realizations: int = 1


def _values(ds: xarray.Dataset, axis: str) -> np.ndarray:
    return np.asarray(ds[axis].values, dtype=np.float64)


def _modifier_axes(ds: xarray.Dataset) -> list[str]:
    return [d for d in ds["T1"].dims if d not in (KT, REALIZATION)]


def _listing(values: np.ndarray) -> str:
    shown = [_fmt(v) for v in values]
    if len(shown) > 12:
        shown = [*shown[:5], "...", *shown[-5:]]
    return ", ".join(shown)


def _fmt(value: float) -> str:
    return format(float(value), ".4g")


def _unit(ds: xarray.Dataset, axis: str) -> str:
    return str(ds[axis].attrs.get("units", ""))


def _with_unit(ds: xarray.Dataset, axis: str, value: float) -> str:
    unit = _unit(ds, axis)
    return f"{axis} = {_fmt(value)}{f' {unit}' if unit else ''}"


def _index(ds: xarray.Dataset, axis: str, value: float, option: str) -> int:
    """The grid index of *value* on *axis*: the nearest within :data:`SNAP` of the spacing."""
    values = _values(ds, axis)
    if not np.isfinite(value):
        raise InputError(f"{option}: {value!r} is not a number")
    i = int(np.argmin(np.abs(values - value)))
    spacing = np.diff(np.unique(values))
    scale = float(spacing.min()) if spacing.size else max(abs(float(values[0])), 1.0)
    if abs(values[i] - value) > SNAP * scale + 1e-12 * max(1.0, abs(value)):
        unit = _unit(ds, axis)
        raise InputError(
            f"{option}: {_fmt(value)} is not a value of axis '{axis}'"
            f"{f' ({unit})' if unit else ''}; its values are {_listing(values)}"
        )
    if values[i] != value:
        log.info("%s: using the grid value %s", option, _fmt(values[i]))
    return i


def _axis_name(name: str, option: str, allowed: Sequence[str]) -> str:
    if name not in allowed:
        raise InputError(
            f"{option}: the library has no axis '{name}'; its axes are {', '.join(allowed)}"
        )
    return name


def _strength_axes(family: str, axes: Mapping[str, np.ndarray]) -> set[str]:
    """The axes whose value 0 is no distortion at all, with the others at their middle values.

    Found by evaluating the family (no table to keep in step with the
    families); none for a family this xrmod does not know.
    """
    from xrmod.errors import ModifierError
    from xrmod.modifiers import get_family

    try:
        fam = get_family(family)
    except ModifierError:
        return set()
    energies = np.geomspace(0.1, 20.0, 64)
    middle = {name: float(v[(len(v) - 1) // 2]) for name, v in axes.items()}
    found = set()
    for name in axes:
        if name not in fam.parameters:
            continue
        params = {**middle, name: 0.0}
        try:
            ratio = fam.apply(energies, np.ones_like(energies), params).values
        except ModifierError:
            continue
        if np.allclose(ratio, 1.0, rtol=0, atol=1e-12):
            found.add(name)
    return found


def _computed_fraction(ds: xarray.Dataset, index: Mapping[str, int]) -> float:
    t1 = np.asarray(ds["T1"].isel(index).values)
    return float(np.isfinite(t1).mean()) if t1.size else 0.0


def parse_at(items: Sequence[str] | None) -> dict[str, float]:
    """``["mu=6.4", "realization=0"]`` (the ``--at`` options) as ``{"mu": 6.4, ...}``.

    Raises
    ------
    xrmod.errors.InputError
        An item is not ``AXIS=NUMBER``, or names an axis twice.
    """
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        try:
            value = float(text)
        except ValueError:
            value = None
        if not sep or not name or value is None:
            raise InputError(f"--at expects AXIS=VALUE (e.g. --at mu=6.4), got {item!r}")
        if name in out:
            raise InputError(f"--at {name} is given twice")
        out[name] = value
    return out


def choose_view(
    ds: xarray.Dataset,
    *,
    x: str | None = None,
    y: str | None = None,
    at: Mapping[str, float] | None = None,
    kT: float | None = None,
    kind: str = "all",
) -> View:
    """Resolve the figures' slice of *ds* by the rule of this module's docstring.

    Parameters
    ----------
    ds : xarray.Dataset
        A library (:func:`xrmod.open_library`).
    x, y : str, optional
        The map's axes; ``y`` may be ``kT_true``.
    at : mapping of str to float, optional
        Values of the axes the figures do not vary (``realization`` too).
    kT : float, optional
        The map's true temperature, keV.
    kind : str
        The figures drawn (:data:`KINDS`): ``at`` may then fix the map's ``y``
        only when the curves are drawn (they do not vary it).

    Raises
    ------
    xrmod.errors.InputError
        An unknown axis, a value not on the grid, or an axis given twice.
    """
    at = dict(at or {})
    axes = _modifier_axes(ds)
    varying = [a for a in axes if ds.sizes[a] > 1]
    allowed = [*axes, KT]
    if x is not None:
        x = _axis_name(x, "--x", axes)
    if y is not None:
        y = _axis_name(y, "--y", allowed)
    if x is None:
        candidates = [a for a in varying if a != y] or [a for a in axes if a != y]
        if not candidates:
            raise InputError(f"--y {y}: the library's only modifier axis is the one --x needs")
        x = candidates[0]
    if y is None:
        y = next((a for a in varying if a != x), KT)
    if x == y:
        raise InputError(f"--x and --y are both '{x}': choose two different axes")
    if kT is not None and (y == KT or kind == "curves"):
        uses = "kT_true is the map's y axis" if y == KT else "the curves span every kT_true"
        raise InputError(f"--kT: no figure drawn uses it ({uses})")
    for name in at:
        if name == KT:
            raise InputError("--at kT_true: give the temperature with --kT")
        if name == REALIZATION and REALIZATION in ds.dims:
            continue
        _axis_name(name, f"--at {name}", axes)
        if name == x:
            raise InputError(f"--at {name}: '{name}' is the x axis of every figure")
        if name == y and kind in ("map", "status"):
            raise InputError(f"--at {name}: '{name}' is the map's y axis")
    fixed: dict[str, int] = {}
    for name, value in at.items():
        fixed[name] = _index(ds, name, value, f"--at {name}")
    temps = _values(ds, KT)
    kT_index = _index(ds, KT, kT, "--kT") if kT is not None else (temps.size - 1) // 2
    others = [a for a in axes if a not in (x, y) and a not in fixed]
    if y not in fixed and y != KT:
        others.append(y)  # fixed for the curves, which vary x only
    strength = _strength_axes(str(ds.attrs.get("family", "")), {a: _values(ds, a) for a in axes})
    for name in others:
        values = _values(ds, name)
        if name in strength and values.size > 1:
            fixed[name] = _strongest(ds, name, values, x, y, fixed, kT_index)
        else:
            fixed[name] = (values.size - 1) // 2
    realizations = 1
    if REALIZATION in ds.dims and REALIZATION not in fixed:
        realizations = int(ds.sizes[REALIZATION])
    return View(x, y, fixed, kT_index, kT is not None, realizations)


def _strongest(
    ds: xarray.Dataset,
    name: str,
    values: np.ndarray,
    x: str,
    y: str,
    fixed: Mapping[str, int],
    kT_index: int,
) -> int:
    """Index of the largest |value| whose map is mostly computed (ties: the positive one)."""
    order = sorted(range(values.size), key=lambda i: (-abs(values[i]), -values[i]))
    for i in order:
        if values[i] == 0:
            break
        index = {k: v for k, v in fixed.items() if k not in (x, y)}
        index[name] = i
        if y != KT:
            index[KT] = kT_index
        if _computed_fraction(ds, index) >= COMPUTED_ENOUGH:
            return i
    return order[0]


# --------------------------------------------------------------------------- data
def _slice(ds: xarray.Dataset, view: View, keep: Sequence[str], *, kT: bool = True) -> dict:
    """Index selecting the view's fixed values, leaving *keep* (and realization) free."""
    index = {k: v for k, v in view.fixed.items() if k not in keep}
    if kT and KT not in keep:
        index[KT] = view.kT_index
    return index


def _mean_over_realizations(values: np.ndarray, axis: int | None) -> np.ndarray:
    """Mean of the finite values along *axis* (NaN where none is finite); no warnings."""
    if axis is None:
        return values
    finite = np.isfinite(values)
    n = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _array(ds: xarray.Dataset, name: str, index: Mapping[str, int], dims: Sequence[str]) -> Any:
    """``ds[name]`` at *index*, realizations averaged, as an array over *dims* (in order)."""
    da = ds[name].isel(dict(index))
    order = [d for d in dims if d in da.dims]
    extra = [REALIZATION] if REALIZATION in da.dims and REALIZATION not in dims else []
    values = np.asarray(da.transpose(*order, *extra).values, dtype=np.float64)
    return _mean_over_realizations(values, values.ndim - 1 if extra else None)


def _realization_note(view: View, ds: xarray.Dataset) -> str:
    if view.realizations > 1:
        return f"mean of {view.realizations} realizations"
    if REALIZATION in view.fixed:
        return f"realization {int(ds[REALIZATION].values[view.fixed[REALIZATION]])}"
    return ""


def _fixed_text(ds: xarray.Dataset, view: View, varied: Sequence[str], kT: bool = True) -> str:
    parts = []
    if kT and KT not in varied:
        parts.append(_with_unit(ds, KT, _values(ds, KT)[view.kT_index]))
    for name in _modifier_axes(ds):  # in library order
        if name in varied or name not in view.fixed:
            continue
        parts.append(_with_unit(ds, name, _values(ds, name)[view.fixed[name]]))
    return ", ".join(parts)


def _label(ds: xarray.Dataset, axis: str) -> str:
    unit = _unit(ds, axis)
    name = "kT_true" if axis == KT else axis
    return f"{name} ({unit})" if unit else name


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around grid values (geometric midpoints on a log axis)."""
    v = np.log(values) if log else np.asarray(values, dtype=np.float64)
    if v.size == 1:
        half = 0.5 * (abs(v[0]) if v[0] != 0 else 1.0) if not log else 0.1
        edges = np.array([v[0] - half, v[0] + half])
    else:
        mid = 0.5 * (v[1:] + v[:-1])
        edges = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(edges) if log else edges


#: A modifier axis whose widest grid step is more than this many times its narrowest
#: is drawn with equal cells (ticks at its values) rather than to scale.
UNEVEN = 3.0


@dataclass(frozen=True)
class _Placement:
    """Where a map axis puts its grid values: to scale, on a log scale, or one cell each."""

    values: np.ndarray
    mode: str  # "linear", "log" (kT_true) or "index" (an uneven grid)

    @property
    def centres(self) -> np.ndarray:
        return np.arange(self.values.size, dtype=float) if self.mode == "index" else self.values

    @property
    def edges(self) -> np.ndarray:
        if self.mode == "index":
            return np.arange(self.values.size + 1) - 0.5
        return _edges(self.values, self.mode == "log")

    def style(self, ax: Axes, which: str) -> None:
        """Set the scale, or ticks at the grid values, of *ax*'s *which* ("x"/"y") axis."""
        from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

        if self.mode == "log":
            _log_scale(ax, which)
        elif self.mode == "index":
            axis = ax.xaxis if which == "x" else ax.yaxis
            ticks = _spread(list(range(self.values.size)), 12)
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(FixedFormatter([_fmt(self.values[i]) for i in ticks]))
            axis.set_minor_locator(NullLocator())


def _placement(ds: xarray.Dataset, axis: str) -> _Placement:
    values = _values(ds, axis)
    if axis == KT and bool((values > 0).all()):
        return _Placement(values, "log")
    steps = np.diff(values)
    if values.size > 2 and (steps > 0).all() and steps.max() > UNEVEN * steps.min():
        return _Placement(values, "index")
    return _Placement(values, "linear")


# --------------------------------------------------------------------------- figures
def bias_map(
    ds: xarray.Dataset,
    ax: Axes | None = None,
    *,
    x: str | None = None,
    y: str | None = None,
    at: Mapping[str, float] | None = None,
    kT: float | None = None,
    view: View | None = None,
) -> Axes:
    """Draw T1 / kT_true over two axes on *ax* (a new figure's when None).

    Diverging colours centred on 1, symmetric in log(T1 / kT_true) (a
    factor r high and r low are equally dark), labelled contours
    (:func:`contour_levels`; the line T1 = kT_true bold),
    failed fits (T1 NaN) hatched. The slice is :func:`choose_view`'s (or
    *view*).

    Examples
    --------
    >>> from xrmod import open_library
    >>> from xrmod.analysis.plot import bias_map
    >>> with open_library("library.h5") as ds:  # doctest: +SKIP
    ...     ax = bias_map(ds, x="mu", y="sigma", at={"amp": 0.2}, kT=6.0)
    ...     ax.figure.savefig("bias-map.png")
    """
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch, Rectangle

    view = view or choose_view(ds, x=x, y=y, at=at, kT=kT, kind="map")
    ax = ax or _new_axes()
    dims = (view.y, view.x)
    z = _array(ds, "T1", _slice(ds, view, dims), dims)
    if view.y == KT:
        z = z / _values(ds, KT)[:, None]
    else:
        z = z / _values(ds, KT)[view.kT_index]
    px, py = _placement(ds, view.x), _placement(ds, view.y)
    finite = z[np.isfinite(z) & (z > 0)]
    # symmetric in log(T1 / kT_true): 10 % high and 1/1.1 low are the same colour
    ratio = float(np.max(np.maximum(finite, 1.0 / finite))) if finite.size else 1.0
    ratio = max(ratio, 1.001)
    import matplotlib as mpl

    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad=(0, 0, 0, 0))
    norm = LogNorm(1.0 / ratio, ratio)
    # hatching under the mesh shows through the transparent (NaN) cells
    ax.add_patch(
        Rectangle(
            (0, 0),
            1,
            1,
            transform=ax.transAxes,
            facecolor="white",
            edgecolor="0.55",
            hatch="///",
            linewidth=0,
            zorder=0,
        )
    )
    mesh = ax.pcolormesh(
        px.edges,
        py.edges,
        np.ma.masked_invalid(z),
        cmap=cmap,
        norm=norm,
        shading="flat",
        zorder=1,
    )
    bar = ax.figure.colorbar(mesh, ax=ax)
    bar.set_label("T1 / kT_true")
    if not finite.size:
        ax.text(
            0.5,
            0.5,
            "no T1 computed in this slice",
            transform=ax.transAxes,
            ha="center",
            va="center",
            backgroundcolor="white",
            zorder=3,
        )
    elif z.shape[0] > 1 and z.shape[1] > 1 and np.ptp(finite) > 1e-6:
        _contours(ax, px.centres, py.centres, z, finite, bar)
    px.style(ax, "x")
    py.style(ax, "y")
    ax.set_xlabel(_label(ds, view.x))
    ax.set_ylabel(_label(ds, view.y))
    title = "T1 / kT_true"
    fixed = _fixed_text(ds, view, dims)
    note = _realization_note(view, ds)
    ax.set_title("\n".join(filter(None, [title + (f" at {fixed}" if fixed else ""), note])))
    if not np.isfinite(z).all():
        ax.legend(
            handles=[Patch(facecolor="white", edgecolor="0.55", hatch="///", label=_FAILED)],
            loc="upper left",
            bbox_to_anchor=(0.0, -0.12),
            fontsize="small",
            frameon=False,
        )
    return ax


#: Contour levels of the bias map: the ones inside the map's range are drawn,
#: fewest-near-1 first when there are too many (1 itself always, when inside).
CONTOUR_LADDER = (
    0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998,
    1.0,
    1.002, 1.005, 1.01, 1.02, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip
#: Most contour levels drawn.
MAX_LEVELS = 8


def contour_levels(lo: float, hi: float) -> list[float]:
    """The bias map's contour levels for values from *lo* to *hi*.

    The values of :data:`CONTOUR_LADDER` strictly inside (lo, hi); while
    there are more than :data:`MAX_LEVELS`, the pair nearest 1 (one on each
    side, 1 itself kept) goes.
    """
    levels = [v for v in CONTOUR_LADDER if lo < v < hi]
    while len(levels) > MAX_LEVELS:
        inner = min((v for v in levels if v != 1.0), key=lambda v: abs(np.log(v)))
        twin = [v for v in levels if v != 1.0 and v != inner and (v - 1.0) * (inner - 1.0) < 0]
        levels.remove(inner)
        if twin:  # its partner on the other side of 1: the levels stay balanced
            levels.remove(min(twin, key=lambda v: abs(np.log(v))))
    return levels


def _apart(levels: list[float], lo: float, hi: float, gap: float = 0.06) -> list[float]:
    """The levels a colour bar from *lo* to *hi* (log scale) can label without overlap.

    From 1 outwards, a level is kept when it is at least *gap* of the bar's
    length from the last one kept.
    """
    span = np.log(hi) - np.log(lo)
    kept: list[float] = [1.0] if 1.0 in levels else []
    for side in (
        sorted(v for v in levels if v > 1),
        sorted((v for v in levels if v < 1), reverse=True),
    ):
        last = 1.0 if kept else None
        for v in side:
            if last is None or abs(np.log(v) - np.log(last)) >= gap * span:
                kept.append(v)
                last = v
    return sorted(kept)


def _contours(
    ax: Axes, xs: np.ndarray, ys: np.ndarray, z: np.ndarray, finite: np.ndarray, bar: Any
) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    levels = contour_levels(float(finite.min()), float(finite.max()))
    if not levels:
        return
    widths = [1.4 if v == 1.0 else 0.7 for v in levels]
    lines = ax.contour(
        xs, ys, np.ma.masked_invalid(z), levels=levels, colors="k", linewidths=widths, zorder=2
    )
    ax.clabel(lines, fmt=lambda v: f"{v:g}", fontsize="x-small", inline=True)
    bar.add_lines(lines)
    bar.ax.yaxis.set_major_locator(FixedLocator(_apart(levels, *bar.mappable.norm.inverse([0, 1]))))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_locator(NullLocator())


def bias_curves(
    ds: xarray.Dataset,
    ax: Axes | None = None,
    *,
    x: str | None = None,
    y: str | None = None,
    at: Mapping[str, float] | None = None,
    kT: float | None = None,
    view: View | None = None,
) -> Axes:
    """Draw T1 / kT_true against kT_true for a few values of ``x`` on *ax*.

    Up to :data:`MAX_CURVES` values spread over the ``x`` grid (of those with
    a computed T1; the others are named in the legend), the other
    axes fixed as :func:`choose_view` says; each curve with its bounds
    T1_lo .. T1_hi (divided by kT_true) as a band and T1′ / kT_true dashed.

    Examples
    --------
    >>> with open_library("library.h5") as ds:  # doctest: +SKIP
    ...     ax = bias_curves(ds, x="amp", at={"mu": 6.4, "sigma": 0.3})
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    view = view or choose_view(ds, x=x, y=y, at=at, kT=kT, kind="curves")
    ax = ax or _new_axes()
    temps = _values(ds, KT)
    xs = _values(ds, view.x)
    index = {k: v for k, v in view.fixed.items() if k != view.x}
    dims = (view.x, KT)
    arrays = {
        name: _array(ds, name, index, dims) / temps
        for name in ("T1", "T1_lo", "T1_hi", "T1_modified")
        if name in ds
    }
    computed = [i for i in range(xs.size) if np.isfinite(arrays["T1"][i]).any()]
    picks = _spread(computed, MAX_CURVES)
    import matplotlib as mpl

    colours = mpl.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(picks), 1)))
    ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle=":", zorder=1)
    for colour, i in zip(colours, picks, strict=True):
        ax.fill_between(
            temps, arrays["T1_lo"][i], arrays["T1_hi"][i], color=colour, alpha=0.18, linewidth=0
        )
        ax.plot(
            temps,
            arrays["T1"][i],
            color=colour,
            marker="o",
            markersize=3.5,
            label=_with_unit(ds, view.x, xs[i]),
        )
        if "T1_modified" in arrays:
            ax.plot(temps, arrays["T1_modified"][i], color=colour, linestyle="--", linewidth=1.0)
    _log_scale(ax, "x")
    ax.set_xlabel(_label(ds, KT))
    ax.set_ylabel("T1 / kT_true")
    handles, _ = ax.get_legend_handles_labels()
    delta = ds.attrs.get("error_delta")
    bounds = "bounds" + (f" (Δstat = {_fmt(delta)})" if delta is not None else "")
    handles += [
        Patch(color="0.5", alpha=0.3, label=f"T1 {bounds}"),
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.0, label="T1′ (modified ARF)"),
    ]
    failed = [i for i in range(xs.size) if i not in computed]
    if failed:
        unit = _unit(ds, view.x)
        values = ", ".join(_fmt(xs[i]) for i in failed) + (f" {unit}" if unit else "")
        handles.append(Patch(color="none", label=f"no T1 at {view.x} = {values}"))
    if not picks:
        ax.text(
            0.5,
            0.5,
            "no T1 computed in this slice",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
    ax.legend(handles=handles, fontsize="small", loc="best")
    fixed = _fixed_text(ds, view, (view.x, KT), kT=False)
    note = _realization_note(view, ds)
    ax.set_title(
        "\n".join(filter(None, ["T1 / kT_true" + (f" at {fixed}" if fixed else ""), note]))
    )
    return ax


def _spread(items: list[int], n: int) -> list[int]:
    """At most *n* of *items*, spread evenly from the first to the last."""
    if len(items) <= n:
        return items
    return [items[k] for k in sorted({round(i) for i in np.linspace(0, len(items) - 1, n)})]


def _log_scale(ax: Axes, which: str) -> None:
    """A log axis labelled 1, 2, 5, 10, 20, ... in plain numbers (kT_true in keV)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def status_map(
    ds: xarray.Dataset,
    axes: Sequence[Axes] | None = None,
    *,
    x: str | None = None,
    y: str | None = None,
    at: Mapping[str, float] | None = None,
    kT: float | None = None,
    view: View | None = None,
    legend: bool = True,
) -> list[Axes]:
    """Draw where the fits failed: the status of T1 and of T1′ over the map's axes.

    Each cell shows the most severe code (:data:`STATUS_ORDER`) over every
    kT_true and realization of that cell (at the chosen kT alone when *kT*
    was given) and, when not every point is OK, how many are not. *axes*:
    one per status dataset (two; one for a format-1 library).

    Examples
    --------
    >>> with open_library("library.h5") as ds:  # doctest: +SKIP
    ...     t1, t1prime = status_map(ds)
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    view = view or choose_view(ds, x=x, y=y, at=at, kT=kT, kind="status")
    names = [n for n in ("status", "status_modified") if n in ds]
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.2 * len(names) + 1.5, 4.6), layout="constrained")
        axes = list(fig.subplots(1, len(names), squeeze=False)[0])
    dims = (view.y, view.x)
    over_kT = view.y != KT and not view.kT_chosen
    index = _slice(ds, view, dims, kT=not over_kT)
    codes_seen: set[int] = set()
    grids = []
    for name in names:
        da = ds[name].isel(index)
        rest = [d for d in da.dims if d not in dims]
        codes = np.asarray(da.transpose(*dims, *rest).values).reshape(
            len(ds[view.y]), len(ds[view.x]), -1
        )
        grids.append(codes)
        codes_seen.update(np.unique(codes).tolist())
    order = [int(c) for c in STATUS_ORDER] + sorted(codes_seen - {int(c) for c in STATUS_ORDER})
    shown = [c for c in order if c in codes_seen]
    rank = {c: i for i, c in enumerate(shown)}
    colours = [STATUS_COLOURS.get(c, _OTHER_COLOUR) if _known(c) else _OTHER_COLOUR for c in shown]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(len(shown) + 1) - 0.5, len(shown))
    px, py = _placement(ds, view.x), _placement(ds, view.y)
    labels = {"status": "T1", "status_modified": "T1′"}
    if "status_modified" not in ds:
        labels["status"] = "T1 and T1′ (format 1: the worse)"
    lookup = np.zeros(256, dtype=np.int64)  # int8 code -> its place in `shown`
    for code, place in rank.items():
        lookup[code % 256] = place
    for ax, name, codes in zip(axes, names, grids, strict=True):
        worst = lookup[codes.astype(np.int64) % 256].min(axis=-1)
        ax.pcolormesh(
            px.edges,
            py.edges,
            worst,
            cmap=cmap,
            norm=norm,
            shading="flat",
            edgecolors="white",
            linewidth=0.5,
        )
        per_cell = codes.shape[-1]
        if per_cell > 1 and worst.size <= MAX_LABELLED_CELLS:
            bad = (codes != Status.OK).sum(axis=-1)
            for (j, i), n in np.ndenumerate(bad):
                if n:
                    ax.text(
                        px.centres[i],
                        py.centres[j],
                        str(n),
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="white" if _dark(colours[worst[j, i]]) else "black",
                    )
        px.style(ax, "x")
        py.style(ax, "y")
        ax.set_xlabel(_label(ds, view.x))
        ax.set_ylabel(_label(ds, view.y))
        where = _fixed_text(ds, view, dims, kT=not over_kT)
        lines = [f"status of {labels[name]}" + (f" at {where}" if where else "")]
        if per_cell > 1:
            over = [f"the {len(ds[KT])} kT_true"] if over_kT else []
            if view.realizations > 1:
                over.append(f"{view.realizations} realizations")
            lines.append(f"worst over {' × '.join(over)}; number: points not OK")
        ax.set_title("\n".join(lines), fontsize="medium")
    if legend:
        handles = [
            Patch(facecolor=col, edgecolor="0.6", label=_status_label(c))
            for c, col in zip(shown, colours, strict=True)
        ]
        axes[-1].figure.legend(
            handles=handles, loc="outside right center", fontsize="small", title="status"
        )
    return list(axes)


def _known(code: int) -> bool:
    try:
        Status(code)
    except ValueError:
        return False
    return True


def _status_label(code: int) -> str:
    return f"{code}: {Status(code).name}" if _known(code) else f"{code}: unknown"


def _dark(colour: str) -> bool:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5


def _new_axes() -> Axes:
    from matplotlib.figure import Figure

    return Figure(figsize=(6.4, 5.0), layout="constrained").subplots()


# --------------------------------------------------------------------------- the command
def plot_library(
    path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    kind: str = "all",
    x: str | None = None,
    y: str | None = None,
    at: Mapping[str, float] | None = None,
    kT: float | None = None,
) -> Figure:
    """Draw the figures of *kind* for the library *path*; save them to *output* if given.

    Parameters
    ----------
    path : str or os.PathLike
        An xrmod library.
    output : str or os.PathLike, optional
        A ``.png``, ``.pdf`` or ``.svg`` file (the suffix picks the format).
    kind : {"all", "map", "curves", "status"}
        ``all``: the bias map and the bias curves above the two status maps.
    x, y, at, kT
        The slice (:func:`choose_view`).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    xrmod.errors.InputError
        Not a library, an unknown kind, axis or format, a value not on the grid,
        an output that cannot be written.
    xrmod.errors.XrmodError
        matplotlib or xarray is not installed (the ``plot`` extra).

    Examples
    --------
    >>> from xrmod.analysis.plot import plot_library
    >>> plot_library("library.h5", "library.png")  # doctest: +SKIP
    >>> plot_library("lib.h5", "map.pdf", kind="map", at={"amp": -0.1}, kT=6.0)  # doctest: +SKIP
    """
    import importlib.util

    from xrmod.analysis import open_library

    missing = [m for m in ("matplotlib", "xarray") if importlib.util.find_spec(m) is None]
    if missing:
        raise XrmodError(f"plotting needs {' and '.join(missing)}: pip install 'xrmod[plot]'")
    if kind not in KINDS:
        raise InputError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if output is not None and Path(output).suffix.lower() not in FORMATS:
        raise InputError(f"{output}: cannot tell the format; plot writes .png, .pdf or .svg files")
    with open_library(path) as ds:
        view = choose_view(ds, x=x, y=y, at=at, kT=kT, kind=kind)
        fig = _figure(ds, view, kind, Path(path).name)
    if output is not None:
        try:
            fig.savefig(output, dpi=DPI)
        except OSError as e:
            raise InputError(f"cannot write {output}: {e.strerror or e}") from e
        log.info("wrote %s", output)
    return fig


def _figure(ds: xarray.Dataset, view: View, kind: str, name: str) -> Figure:
    from matplotlib.figure import Figure

    n_status = 2 if "status_modified" in ds else 1
    if kind == "map":
        fig = Figure(figsize=(6.6, 5.2), layout="constrained")
        bias_map(ds, fig.subplots(), view=view)
    elif kind == "curves":
        fig = Figure(figsize=(6.8, 5.0), layout="constrained")
        bias_curves(ds, fig.subplots(), view=view)
    elif kind == "status":
        fig = Figure(figsize=(5.0 * n_status + 2.0, 4.6), layout="constrained")
        status_map(ds, list(fig.subplots(1, n_status, squeeze=False)[0]), view=view)
    else:
        fig = Figure(figsize=(13.0, 10.0), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1.0])
        left, right = top.subplots(1, 2)
        bias_map(ds, left, view=view)
        bias_curves(ds, right, view=view)
        status_map(ds, list(bottom.subplots(1, n_status, squeeze=False)[0]), view=view)
    attrs = ds.attrs
    fig.suptitle(
        f"{name}: {attrs.get('family', '?')} family, {attrs.get('model', '?')}, "
        f"{attrs.get('engine', '?')} engine, {attrs.get('noise', '?')} noise",
        fontsize="medium",
    )
    return fig
