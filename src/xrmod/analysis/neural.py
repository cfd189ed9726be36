"""The neural emulator: a small MLP trained on a library's nodes (``xrmod[nn]``).

:class:`NeuralEmulator` is the alternative to the interpolating
:class:`~xrmod.analysis.spline.SplineEmulator`: a fully connected tanh
network from the emulator's axis coordinates (log kT_true, the modifier axes
linear or log), each mapped to [-1, 1] by the grid's bounds, to the four
targets of :mod:`xrmod.analysis.training` (log(T1/kT_true), log(width/kT_true),
the same for T1′), each standardised. It is trained with PyTorch by a Gaussian
likelihood (:class:`TrainingOptions`) and *evaluated* with NumPy (values and
an analytic Jacobian), so a saved network predicts without PyTorch installed,
bit for bit as the one that was saved.

Its accuracy is measured on whole slices of the grid kept out of its training
(:func:`held_out_slices`), and :func:`compare_with_spline` gives the spline's
leave-one-slice-out error on exactly those nodes: the spline stays the default
unless the network measures better.

Examples
--------
>>> em = xrmod.Emulator.from_library("library.h5", kind="mlp", seed=1)  # doctest: +SKIP
>>> print(em.describe())  # held-out error, and the spline's on the same nodes
>>> em.save()  # into library.h5's /EMULATORS/mlp
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xrmod.analysis.emulator import QUANTITIES, Accuracy, Emulator
from xrmod.analysis.spline import (
    SplineEmulator,
    cells_ok,
    fill_unknown,
    interior_slices,
    known_nodes,
    leave_one_slice_out,
    max_abs,
    rms,
    slice_errors,
    slice_points,
)
from xrmod.analysis.training import FITS, TrainingSet
from xrmod.errors import InputError
from xrmod.library import decode_attr

__all__ = [
    "NEEDS_TORCH",
    "NeuralEmulator",
    "TrainingOptions",
    "compare_with_spline",
    "held_out_slices",
    "slice_accuracy",
]

log = logging.getLogger(__name__)

#: What a missing PyTorch is reported with.
NEEDS_TORCH = 'the neural emulator needs PyTorch: pip install "xrmod[nn]"'

#: Soft bounds of the predicted log-variance: keep the likelihood finite.
_LOGVAR_MIN, _LOGVAR_MAX = -18.0, 6.0
#: Smallest standard deviation a target is divided by (log units): a target constant to
#: rounding (T1′ of an Asimov library) must not have its rounding blown up.
_SCALE_FLOOR = 1e-3
#: Rows evaluated at once (bounds the memory of the hidden layers).
_CHUNK = 8192
#: Precision of the evaluation: float32 is 2-2.5x faster than float64 (tanh and the
#: products), and its rounding, ~1e-7 of a standardised output, is ~1e-8 in log T1:
#: far below the network's error. Inputs are standardised and outputs scaled in float64.
_EVAL_DTYPE = np.float32


@dataclass(frozen=True)
class TrainingOptions:
    """How a :class:`NeuralEmulator` is trained (every field is a keyword of its constructor).

    The defaults were chosen on Asimov and Poisson libraries of 600-2000
    nodes (``bench/emulator_nn.py``).

    Attributes
    ----------
    hidden : tuple of int
        Widths of the hidden layers (tanh: smooth, and so are the gradients).
    seed : int
        Seeds the weights, the validation split and the batches: same seed,
        same library, same network.
    learning_rate : float
        Adam's initial step; halved after ``patience // 4`` epochs without progress.
    max_epochs : int
        Upper bound on the passes over the training nodes.
    patience : int
        Early stopping: epochs without a better validation error before
        stopping; the best weights are kept.
    batch_size : int or None
        Nodes per Adam step; None: the whole training set while it has at most
        8192 nodes (full batch: deterministic and the most precise), else 1024.
    validation : float
        Fraction of the training nodes drawn (seeded) for early stopping.
    beta : float
        β of the β-NLL (Seitzer et al. 2022): each node's negative
        log-likelihood weighted by its predicted variance to the power β (not
        differentiated): 0 is the plain likelihood, 1 weighs like least
        squares. With 0 the network widens its variance where the surface
        bends most (the grid's corners) instead of fitting it: 1σ RMS and
        10σ maximum errors at training nodes of Asimov libraries; with 1 it
        fits them to 0.05σ but interpolates worse across a coarse axis; 0.5
        fits them to ~0.1σ and did best on held-out slices.
    sigma_units : bool
        Measure a temperature's residual in the library's own 1σ width there
        (the likelihood's variance is that width squared times the predicted
        factor), as the accuracy is measured; False: in standardised units.
    holdout : float
        At most this fraction of the usable nodes is held out as whole slices
        to measure the accuracy (:func:`held_out_slices`).
    max_slices : int
        Slices per axis considered for the held-out set (as the spline's
        ``leave_one_slice_out``).
    slices : sequence of (str, int), optional
        The held-out slices, as (axis name, index), instead of :func:`held_out_slices`'s.
    """

    hidden: tuple[int, ...] = (64, 64, 64)
    seed: int = 0
    learning_rate: float = 3e-3
    max_epochs: int = 10000
    patience: int = 1000
    batch_size: int | None = None
    validation: float = 0.1
    beta: float = 0.5
    sigma_units: bool = True
    holdout: float = 0.2
    max_slices: int = 8
    slices: tuple[tuple[str, int], ...] | None = None


class NeuralEmulator(Emulator):
    """A small MLP through a library's nodes, trained by a Gaussian likelihood.

    The network has eight outputs: per quantity a mean and a log-variance.
    A variance per quantity, not per fit, so that a width (whose own error
    is unknown) does not share its scatter with the temperature; for a
    temperature it is a factor on the library's statistical variance at the
    node (:class:`TrainingOptions` ``sigma_units``). The variance weighs
    the nodes in training only. The emulator's own error
    (:meth:`~xrmod.analysis.emulator.Emulator.error_scale`) is, as the
    spline's, the RMS error on held-out nodes in units of the library's
    width: the variance learned at the training nodes says nothing of the
    interpolation between them (on held-out slices, errors were 20-30x the
    predicted σ on Asimov libraries, where it shrinks to the network's
    misfit at its nodes, 1.7x on a Poisson one, where it learns the noise).

    Parameters
    ----------
    training : TrainingSet
        The library's nodes.
    accuracy : bool
        Hold out slices (:func:`held_out_slices`) to measure the accuracy.
        False trains on every usable node; the emulator's own error is then 0.
    compare : bool
        Also compute the spline's leave-one-slice-out error on the held-out
        nodes (:attr:`spline_accuracy`).
    **options
        Fields of :class:`TrainingOptions`.

    Raises
    ------
    xrmod.errors.InputError
        PyTorch is not installed, an unknown option, too few nodes, or the
        training diverged.
    """

    kind = "mlp"

    def __init__(
        self,
        training: TrainingSet | None,
        *,
        accuracy: bool = True,
        compare: bool = True,
        header: Mapping[str, Any] | None = None,
        arrays: Mapping[str, Any] | None = None,
        **options: Any,
    ):
        super().__init__(training, header=header)
        #: The spline's leave-one-slice-out error on the held-out nodes (None: not measured).
        self.spline_accuracy: Accuracy | None = None
        #: (axis, index) of the slices kept out of training.
        self.held_out: list[tuple[int, int]] = []
        #: Epochs, best epoch, seconds, node counts and options of the training.
        self.training_info: dict[str, Any] = {}
        if training is not None:
            opts = _options(options)
            _require_torch()
            self._usable = {fit: training.usable[fit] for fit in FITS}
            if accuracy:
                self.held_out = _chosen_slices(training, opts)
                if not self.held_out:
                    log.warning(
                        "%s: no axis has three values, no slice to hold out: the network's "
                        "accuracy is not measured (its own error is taken as 0)",
                        training.path,
                    )
            self._fit(training, opts)
            if accuracy and self.held_out:
                self.accuracy = self._held_out_accuracy(training)
                if compare:
                    filled = {
                        q: fill_unknown(training.targets[q], known_nodes(training, q))
                        for q in QUANTITIES
                    }
                    self.spline_accuracy = leave_one_slice_out(
                        training, filled, slices=self.held_out
                    )
        else:
            assert arrays is not None
            self._usable = {fit: np.asarray(arrays[f"usable/{fit}"], bool) for fit in FITS}
            self._weights = [np.asarray(w) for w in arrays["weights"]]
            self._biases = [np.asarray(b) for b in arrays["biases"]]
            self._offset = np.asarray(arrays["output_offset"], np.float64)
            self._scale = np.asarray(arrays["output_scale"], np.float64)
            self.held_out = [(int(j), int(k)) for j, k in arrays["held_out"]]
            self.training_info = dict(arrays["training"])
            self.spline_accuracy = arrays["spline_accuracy"]
            self._prepare()
        self._cell_ok = {fit: cells_ok(u) for fit, u in self._usable.items()}

    # ------------------------------------------------------------ training
    def _fit(self, training: TrainingSet, opts: TrainingOptions) -> None:
        """Standardise the nodes, split them, train the network, keep its best weights."""
        x = self._standardise(_grid_points(training))
        y = np.stack([training.targets[q].ravel() for q in QUANTITIES], axis=1)
        known = np.stack([known_nodes(training, q).ravel() for q in QUANTITIES], axis=1)
        y = np.where(known, y, 0.0)
        test = _slice_mask(training.shape, self.held_out).ravel()
        candidates = np.flatnonzero(known.any(axis=1) & ~test)
        if candidates.size < 10:
            raise InputError(
                f"{training.path}: {candidates.size} usable nodes to train on: too few for a "
                "network (use the spline)"
            )
        rng = np.random.default_rng(opts.seed)
        n_val = max(1, round(opts.validation * candidates.size))
        order = rng.permutation(candidates)
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        offset, scale = np.zeros(len(QUANTITIES)), np.ones(len(QUANTITIES))
        for i in range(len(QUANTITIES)):
            values = y[train, i][known[train, i]]
            if values.size:
                offset[i] = values.mean()
                scale[i] = max(values.std(), _SCALE_FLOOR)
        self._offset, self._scale = offset, scale
        ys = (y - offset) / scale
        noise = _noise(training, known, opts.sigma_units) / scale
        start = time.perf_counter()
        weights, biases, info = _train_torch(
            (x[train], ys[train], known[train], noise[train]),
            (x[val], ys[val], known[val], noise[val]),
            opts,
        )
        if not np.isfinite(info["validation_mse"]):
            raise InputError(
                f"{training.path}: the network's training diverged "
                f"(learning_rate = {opts.learning_rate:g}: try a smaller one)"
            )
        self._weights, self._biases = weights, biases
        self._prepare()
        info.update(
            seconds=time.perf_counter() - start,
            nodes_train=int(train.size),
            nodes_validation=int(val.size),
            nodes_held_out=int(test.sum()),
            options=_plain_options(opts),
        )
        self.training_info = info
        log.info(
            "trained the network on %d nodes (%d more for validation) in %.1f s: "
            "best epoch %d of %d",
            train.size,
            val.size,
            info["seconds"],
            info["best_epoch"],
            info["epochs"],
        )

    def _held_out_accuracy(self, training: TrainingSet) -> Accuracy:
        """Errors on the held-out slices, pooled as the spline's leave-one-slice-out."""
        coords = [a.coordinates for a in training.axes]
        predicted = [
            self._evaluate(slice_points(coords, j, k), list(FITS), gradient=False)[0]
            for j, k in self.held_out
        ]
        return slice_accuracy(training, self.held_out, predicted, method="held-out slices")

    # ------------------------------------------------------------ evaluation
    def _prepare(self) -> None:
        """The weights as :meth:`_evaluate` uses them: in its precision, transposed."""
        dtype = _EVAL_DTYPE
        self._hidden = [
            (np.ascontiguousarray(w.T, dtype=dtype), b.astype(dtype))
            for w, b in zip(self._weights[:-1], self._biases[:-1], strict=True)
        ]
        self._back = [np.ascontiguousarray(w, dtype=dtype) for w in self._weights[:-1]]
        n = len(QUANTITIES)  # the mean outputs; the log-variances are for training only
        self._out_t = np.ascontiguousarray(self._weights[-1][:n].T, dtype=dtype)
        self._out_b = self._biases[-1][:n].astype(dtype)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        """Coordinates to the network's inputs: each axis' grid range to [-1, 1]."""
        return (2.0 * x - (self._hi + self._lo)) / (self._hi - self._lo)

    def _evaluate(self, x, quantities, *, gradient):
        rows = [QUANTITIES.index(q) for q in quantities]
        x = np.asarray(x, dtype=np.float64)
        n, dims = x.shape
        value = np.empty((n, len(rows)))
        grad = np.empty((n, len(rows), dims)) if gradient else None
        w_out = np.ascontiguousarray(self._out_t[:, rows])
        b_out = self._out_b[rows]
        scale, offset = self._scale[rows], self._offset[rows]
        dxs = 2.0 / (self._hi - self._lo)  # d(input) / d(coordinate)
        for lo in range(0, n, _CHUNK):
            h = self._standardise(x[lo : lo + _CHUNK]).astype(_EVAL_DTYPE)
            m = h.shape[0]
            slopes = []  # tanh' of each hidden layer, for the gradient
            for wt, b in self._hidden:
                h = h @ wt
                h += b
                np.tanh(h, out=h)
                if gradient:
                    slopes.append(1.0 - h * h)
            out = h @ w_out
            out += b_out
            value[lo : lo + m] = out * scale + offset
            if gradient:  # reverse mode: one backward pass per output asked for
                g = w_out.T[None, :, :] * slopes[-1][:, None, :]  # (m, outputs, H)
                for w, slope in zip(self._back[:0:-1], slopes[-2::-1], strict=True):
                    g = (g.reshape(-1, w.shape[0]) @ w).reshape(m, len(rows), -1)
                    g *= slope[:, None, :]
                g = (g.reshape(-1, self._back[0].shape[0]) @ self._back[0]).reshape(m, -1, dims)
                grad[lo : lo + m] = g * (scale[:, None] * dxs)
        values = {q: value[:, i] for i, q in enumerate(quantities)}
        grads = {q: grad[:, i, :] for i, q in enumerate(quantities)} if gradient else None
        return values, grads

    # NaN next to an unusable node: the spline's rule, on the same cell masks (_cells_ok)
    _valid = SplineEmulator._valid

    # ------------------------------------------------------------ reports
    def summary(self) -> dict[str, Any]:
        """The common summary, the held-out slices, the spline's error on them, the training."""
        out = super().summary()
        out["held_out"] = [{"axis": self.axes[j].name, "index": k} for j, k in self.held_out]
        out["spline_accuracy"] = self.spline_accuracy.as_dict() if self.spline_accuracy else None
        out["training"] = self.training_info
        return out

    def describe(self) -> str:
        """The common description, the held-out slices and the spline's error on them."""
        lines = [super().describe()]
        if self.held_out:
            names = ", ".join(
                f"{self.axes[j].name} = {self.axes[j].nodes[k]:g}" for j, k in self.held_out
            )
            lines.append(f"  held out of training: the slices {names}")
        if self.spline_accuracy is not None:
            lines.append("  the spline on the same nodes, left out one slice at a time:")
            lines += ["    " + line for line in self.spline_accuracy.format().splitlines()]
        return "\n".join(lines)

    # ------------------------------------------------------------ saving
    @classmethod
    def _from_saved(cls, group, header):
        layers = group["layers"]
        spline = json.loads(decode_attr(group.attrs["spline_accuracy"]))
        arrays = {
            "weights": [layers[f"{i}/weight"][()] for i in range(len(layers))],
            "biases": [layers[f"{i}/bias"][()] for i in range(len(layers))],
            "output_offset": group.attrs["output_offset"],
            "output_scale": group.attrs["output_scale"],
            "held_out": group["held_out"][()],
            "training": json.loads(decode_attr(group.attrs["training"])),
            "spline_accuracy": Accuracy(**spline) if spline else None,
        }
        for fit in FITS:
            arrays[f"usable/{fit}"] = group[f"usable/{fit}"][()]
        return cls(None, header=header, arrays=arrays)

    def _save_arrays(self, group):
        for i, (w, b) in enumerate(zip(self._weights, self._biases, strict=True)):
            group.create_dataset(f"layers/{i}/weight", data=w)
            group.create_dataset(f"layers/{i}/bias", data=b)
        group.attrs["architecture"] = json.dumps(
            {
                "inputs": [a.name for a in self.axes],
                "input": "2 (coordinate - lo) / (hi - lo) - 1; lo, hi: the axis' end coordinates",
                "hidden": [int(w.shape[0]) for w in self._weights[:-1]],
                "activation": "tanh",
                "layer": "y = x @ weight.T + bias",
                "outputs": [*QUANTITIES, *(f"{q}_logvar" for q in QUANTITIES)],
                "value": "output * output_scale + output_offset (the first four outputs)",
                "evaluated_in": np.dtype(_EVAL_DTYPE).name,
            }
        )
        group.attrs["output_offset"] = self._offset
        group.attrs["output_scale"] = self._scale
        group.attrs["training"] = json.dumps(self.training_info)
        spline = self.spline_accuracy.as_dict() if self.spline_accuracy else None
        group.attrs["spline_accuracy"] = json.dumps(spline)
        held = np.asarray(self.held_out, dtype=np.int64).reshape(-1, 2)
        group.create_dataset("held_out", data=held)
        for fit, usable in self._usable.items():
            group.create_dataset(f"usable/{fit}", data=usable, compression="gzip")


# ---------------------------------------------------------------- held-out slices
def held_out_slices(
    training: TrainingSet, fraction: float = 0.2, max_slices: int = 8
) -> list[tuple[int, int]]:
    """(axis, index) of the grid slices kept out of the network's training.

    The candidates are the spline's leave-one-slice-out slices
    (:func:`~xrmod.analysis.emulator.interior_slices`), each axis' ordered
    from its middle outwards. They are visited round-robin over the axes in
    the library's order (the modifier axes, then kT_true), and a slice is
    kept when the union of the kept slices still leaves out at most
    *fraction* of the usable nodes; when no slice is that small, the one of
    the longest axis alone. On a four-axis grid of ~5-10 values per axis,
    that is one or two slices of the first axis: the comparison depends on
    which axis it is (``bench/emulator_nn.py --per-axis`` shows each). The
    network is trained once without all of them, while the spline leaves
    out one at a time: a comparison on these nodes favours the spline.
    """
    by_axis: dict[int, list[int]] = {}
    for j, k in interior_slices(training, max_slices):
        by_axis.setdefault(j, []).append(k)
    if not by_axis:
        return []
    for j, ks in by_axis.items():
        middle = (training.shape[j] - 1) / 2
        ks.sort(key=lambda k, m=middle: (abs(k - m), k))
    usable = training.usable["T1"] | training.usable["T1_modified"]
    budget = fraction * usable.sum()
    chosen: list[tuple[int, int]] = []
    for r in range(max(len(ks) for ks in by_axis.values())):
        for j, ks in by_axis.items():
            if r < len(ks):
                trial = [*chosen, (j, ks[r])]
                if (usable & _slice_mask(training.shape, trial)).sum() <= budget:
                    chosen = trial
    if not chosen:
        j = max(by_axis, key=lambda j: training.shape[j])
        chosen = [(j, by_axis[j][0])]
    return sorted(chosen)


def slice_accuracy(
    training: TrainingSet,
    slices: Sequence[tuple[int, int]],
    predicted: Sequence[Mapping[str, np.ndarray]],
    *,
    method: str,
) -> Accuracy:
    """:class:`Accuracy` of predicted log(T/kT) on *slices* (per slice, fit -> values).

    The nodes and the pooling are the spline's leave-one-slice-out's: the
    usable nodes with usable neighbours along the slice's axis, in units of
    the library's width.
    """
    errors: dict[str, list[np.ndarray]] = {fit: [] for fit in FITS}
    relative: dict[str, list[np.ndarray]] = {fit: [] for fit in FITS}
    per_axis: dict[str, list[np.ndarray]] = {}
    for (j, k), values in zip(slices, predicted, strict=True):
        for fit in FITS:
            err, rel = slice_errors(training, fit, j, k, values[fit])
            errors[fit].append(err)
            relative[fit].append(rel)
            if fit == "T1":
                per_axis.setdefault(training.axes[j].name, []).append(err)
    return Accuracy(
        method=method,
        rms={f: rms(errors[f]) for f in FITS},
        max={f: max_abs(errors[f]) for f in FITS},
        rms_relative={f: rms(relative[f]) for f in FITS},
        nodes={f: int(sum(e.size for e in errors[f])) for f in FITS},
        per_axis={a: rms(e) for a, e in per_axis.items()},
    )


def compare_with_spline(training: TrainingSet, **options: Any) -> dict[str, Any]:
    """Train a network; its held-out error beside the spline's on the same nodes.

    Parameters
    ----------
    training : TrainingSet
        The library's nodes (:func:`xrmod.analysis.training.read_training_set`).
    **options
        Fields of :class:`TrainingOptions`.

    Returns
    -------
    dict
        ``mlp`` and ``spline``: :class:`~xrmod.analysis.emulator.Accuracy` on
        the held-out slices (the network trained once without all of them,
        the spline rebuilt without each in turn); ``nodes``: the number of
        grid nodes in those slices; ``slices``: their (axis name, index);
        ``emulator``: the trained :class:`NeuralEmulator`.

    Raises
    ------
    xrmod.errors.InputError
        No axis has three values (nothing to hold out), or as :class:`NeuralEmulator`.
    """
    if not interior_slices(training) and not options.get("slices"):
        raise InputError(f"{training.path}: no axis has three or more values: no slice to hold out")
    em = NeuralEmulator(training, accuracy=True, compare=True, **options)
    return {
        "mlp": em.accuracy,
        "spline": em.spline_accuracy,
        "nodes": int(_slice_mask(training.shape, em.held_out).sum()),
        "slices": [(training.axes[j].name, k) for j, k in em.held_out],
        "emulator": em,
    }


def _chosen_slices(training: TrainingSet, opts: TrainingOptions) -> list[tuple[int, int]]:
    """The held-out slices: the options' (checked) or :func:`held_out_slices`'s."""
    if opts.slices is None:
        return held_out_slices(training, opts.holdout, opts.max_slices)
    out = []
    for name, k in opts.slices:
        if name not in training.names:
            raise InputError(f"no axis {name!r} to hold out (axes: {', '.join(training.names)})")
        j = training.names.index(name)
        if not 0 < k < training.shape[j] - 1:
            raise InputError(
                f"{name}: index {k} is not an interior slice (1 .. {training.shape[j] - 2})"
            )
        out.append((j, int(k)))
    return sorted(set(out))


# ---------------------------------------------------------------- torch
def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise InputError(f"{NEEDS_TORCH} ({e})") from e


def _options(options: Mapping[str, Any]) -> TrainingOptions:
    known = TrainingOptions.__dataclass_fields__
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"unknown option {', '.join(unknown)} of the neural emulator "
            f"(known: accuracy, compare, {', '.join(known)})"
        )
    opts = dict(options)
    if "hidden" in opts:
        opts["hidden"] = tuple(int(h) for h in opts["hidden"])
    if opts.get("slices") is not None:
        opts["slices"] = tuple((str(a), int(k)) for a, k in opts["slices"])
    return TrainingOptions(**opts)


def _plain_options(opts: TrainingOptions) -> dict[str, Any]:
    """The options as JSON types."""
    out = dict(vars(opts))
    out["hidden"] = list(opts.hidden)
    out["slices"] = [list(s) for s in opts.slices] if opts.slices is not None else None
    return out


def _train_torch(
    train: tuple[np.ndarray, ...],
    val: tuple[np.ndarray, ...],
    opts: TrainingOptions,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Train on (inputs, targets, known, noise): the weights, biases and a record.

    One thread (the caller's setting is restored), float32, the global RNG
    untouched (``fork_rng``): the same seed gives the same weights.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            return _train_loop(torch, train, val, opts)
    finally:
        torch.set_num_threads(threads)


def _train_loop(
    torch: Any, train: tuple[np.ndarray, ...], val: tuple[np.ndarray, ...], opts: TrainingOptions
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Adam on the masked Gaussian NLL; early stopping on the validation error of the means.

    The validation error is the mean squared residual in the likelihood's
    units (σ of the library for a temperature): what the accuracy measures.
    """
    dtype = torch.float32
    n_out = train[1].shape[1]
    layers: list[Any] = []
    for a, b in itertools.pairwise([train[0].shape[1], *opts.hidden]):
        layers += [torch.nn.Linear(a, b, dtype=dtype), torch.nn.Tanh()]
    layers.append(torch.nn.Linear(opts.hidden[-1], 2 * n_out, dtype=dtype))
    model = torch.nn.Sequential(*layers)
    x, y, m, s = (torch.tensor(a, dtype=dtype) for a in train)
    xv, yv, mv, sv = (torch.tensor(a, dtype=dtype) for a in val)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=max(1, opts.patience // 4)
    )
    n = x.shape[0]
    batch = opts.batch_size or (n if n <= 8192 else 1024)
    generator = torch.Generator().manual_seed(opts.seed)
    softplus = torch.nn.functional.softplus

    def loss_of(xb, yb, mb, sb):
        out = model(xb)
        mean, raw = out[:, :n_out], out[:, n_out:]
        logvar = _LOGVAR_MIN + softplus(raw - _LOGVAR_MIN)
        logvar = _LOGVAR_MAX - softplus(_LOGVAR_MAX - logvar)
        nll = 0.5 * (logvar + ((yb - mean) / sb) ** 2 * torch.exp(-logvar))
        if opts.beta:
            nll = nll * torch.exp(opts.beta * logvar.detach())
        return (nll * mb).sum() / mb.sum().clamp(min=1)

    best, best_epoch, best_state = float("inf"), 0, None
    epoch = 0
    for epoch in range(1, opts.max_epochs + 1):
        order = torch.randperm(n, generator=generator) if batch < n else None
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch] if order is not None else slice(None)
            optimizer.zero_grad()
            loss = loss_of(x[idx], y[idx], m[idx], s[idx])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            mean = model(xv)[:, :n_out]
            score = float((((mean - yv) / sv) ** 2 * mv).sum() / mv.sum().clamp(min=1))
        if not np.isfinite(score):
            break
        scheduler.step(score)
        if score < best:
            best, best_epoch = score, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= opts.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    linear = [layer for layer in model if isinstance(layer, torch.nn.Linear)]
    weights = [layer.weight.detach().numpy().copy() for layer in linear]
    biases = [layer.bias.detach().numpy().copy() for layer in linear]
    return weights, biases, {"epochs": epoch, "best_epoch": best_epoch, "validation_mse": best}


# ---------------------------------------------------------------- helpers
def _grid_points(training: TrainingSet) -> np.ndarray:
    """Coordinates of every grid node, (N, D) in C order."""
    mesh = np.meshgrid(*[a.coordinates for a in training.axes], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _noise(training: TrainingSet, known: np.ndarray, sigma_units: bool) -> np.ndarray:
    """(N, 4): each node's residual unit in the likelihood, in the targets' log units.

    For a temperature (with *sigma_units*), the library's 1σ width there
    relative to the value, the σ of log T (the median where the width is
    unknown); for a width, 1.
    """
    out = np.ones((known.shape[0], len(QUANTITIES)))
    if not sigma_units:
        return out
    for fit in FITS:
        i = QUANTITIES.index(fit)
        with np.errstate(invalid="ignore"):
            s = np.exp(training.targets[f"{fit}_width"] - training.targets[fit]).ravel()
        good = known[:, i] & np.isfinite(s) & (s > 0)
        fallback = float(np.median(s[good])) if good.any() else 1.0
        out[:, i] = np.where(good, s, fallback)
    return out


def _slice_mask(shape: tuple[int, ...], slices: Sequence[tuple[int, int]]) -> np.ndarray:
    """Nodes of the grid on any of *slices*."""
    mask = np.zeros(shape, dtype=bool)
    for j, k in slices:
        index: list[Any] = [slice(None)] * len(shape)
        index[j] = k
        mask[tuple(index)] = True
    return mask
