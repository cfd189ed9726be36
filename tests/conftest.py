"""Fixtures: synthetic OGIP responses written with plain astropy, independently of xrmod.

The RMF writer here lays the same matrix out in every way the OGIP memo
CAL/GEN/92-002 allows (scalar, fixed-length or variable-length ``F_CHAN`` /
``N_CHAN``; fixed- or variable-length ``MATRIX``; any ``TLMIN``), so the
reader is tested against layouts that xrmod's own writer never produces.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

# Padding written after the used part of fixed-length columns: a reader that
# does not stop at N_GRP / sum(N_CHAN) picks these up and fails loudly.
PAD_CHANNEL = 9999
PAD_VALUE = 123.0


@dataclass
class SyntheticResponse:
    """A small response: groups per energy row and the dense matrix they describe.

    ``rows[i]`` lists the groups of energy bin i as (first column index,
    values), column index 0 being the first channel whatever its number.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    rows: list[list[tuple[int, list[float]]]]

    @property
    def n_channel(self) -> int:
        return self.e_min.size

    @property
    def dense(self) -> np.ndarray:
        out = np.zeros((self.energ_lo.size, self.n_channel))
        for i, groups in enumerate(self.rows):
            for start, values in groups:
                out[i, start : start + len(values)] += values
        return out


def _grid(n_energy: int, n_channel: int) -> tuple[np.ndarray, ...]:
    edges = np.linspace(0.0, 4.5, n_energy + 1)  # first ENERG_LO = 0 is legal
    chan_edges = np.linspace(0.1, 4.9, n_channel + 1)
    return edges[:-1], edges[1:], chan_edges[:-1], chan_edges[1:]


@pytest.fixture
def synthetic() -> SyntheticResponse:
    """9 energies x 12 channels with 0, 1, 2 and 3 groups per row, unordered groups."""
    rows = [
        [],  # N_GRP = 0
        [(0, [0.5, 0.3])],  # starts at the first channel
        [(2, [0.1, 0.2]), (6, [0.3])],
        [(1, [0.05]), (4, [0.1, 0.1, 0.1]), (10, [0.2, 0.3])],  # ends at the last channel
        [],  # N_GRP = 0 in the middle
        [(3, [0.9])],
        [(11, [0.02]), (0, [0.01])],  # groups not in channel order
        [(5, [0.2, 0.2, 0.2, 0.2])],
        [],  # last row empty
    ]
    return SyntheticResponse(*_grid(len(rows), 12), rows)


@pytest.fixture
def synthetic_single() -> SyntheticResponse:
    """6 energies x 8 channels with at most one group per row (scalar F_CHAN/N_CHAN)."""
    rows = [
        [],
        [(0, [0.7, 0.2])],
        [(2, [0.4, 0.4, 0.1])],
        [],
        [(5, [0.3, 0.3, 0.3])],
        [(7, [1.0])],
    ]
    return SyntheticResponse(*_grid(len(rows), 8), rows)


def write_table(
    path: Path,
    extensions: list[tuple[str, list[fits.Column], dict]],
) -> Path:
    """Write a primary HDU and binary tables given as (EXTNAME, columns, extra keywords)."""
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [fits.PrimaryHDU()]
    for extname, columns, keywords in extensions:
        hdu = fits.BinTableHDU.from_columns(columns)
        hdu.header["EXTNAME"] = extname
        for key, value in keywords.items():
            hdu.header[key] = value
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


def rmf_columns(
    resp: SyntheticResponse,
    *,
    first_channel: int = 1,
    chan_layout: str = "vla",
    matrix_layout: str = "vla",
    float32: bool = False,
) -> dict[str, fits.Column]:
    """The MATRIX columns of ``resp`` in one of the OGIP layouts.

    chan_layout: "vla" (PJ), "fixed" (rJ, r = max N_GRP, padded) or "scalar"
    (J; needs at most one group per row). matrix_layout: "vla" (PE/PD) or
    "fixed" (rE/rD, r = max values per row, padded).
    """
    real = "E" if float32 else "D"
    n_grp = np.array([len(g) for g in resp.rows], dtype=np.int16)
    f_chan = [np.array([s + first_channel for s, _ in g], dtype=np.int32) for g in resp.rows]
    n_chan = [np.array([len(v) for _, v in g], dtype=np.int32) for g in resp.rows]
    values = [
        np.array([x for _, v in g for x in v], dtype=np.float32 if float32 else np.float64)
        for g in resp.rows
    ]
    if chan_layout == "vla":
        fcol = fits.Column(name="F_CHAN", format="PJ()", array=f_chan)
        ncol = fits.Column(name="N_CHAN", format="PJ()", array=n_chan)
    elif chan_layout == "fixed":
        width = max(1, int(n_grp.max()))
        fpad = np.full((n_grp.size, width), PAD_CHANNEL, dtype=np.int32)
        npad = np.full((n_grp.size, width), 7, dtype=np.int32)
        for i, (f, n) in enumerate(zip(f_chan, n_chan, strict=True)):
            fpad[i, : f.size] = f
            npad[i, : n.size] = n
        fcol = fits.Column(name="F_CHAN", format=f"{width}J", array=fpad)
        ncol = fits.Column(name="N_CHAN", format=f"{width}J", array=npad)
    elif chan_layout == "scalar":
        assert n_grp.max() <= 1, "scalar F_CHAN/N_CHAN need at most one group per row"
        fcol = fits.Column(
            name="F_CHAN",
            format="J",
            array=np.array([f[0] if f.size else first_channel for f in f_chan], dtype=np.int32),
        )
        ncol = fits.Column(
            name="N_CHAN",
            format="J",
            array=np.array([n[0] if n.size else 0 for n in n_chan], dtype=np.int32),
        )
    else:
        raise ValueError(chan_layout)
    if matrix_layout == "vla":
        mcol = fits.Column(name="MATRIX", format=f"P{real}()", array=values)
    elif matrix_layout == "fixed":
        width = max(1, max(v.size for v in values))
        mpad = np.full((len(values), width), PAD_VALUE, dtype=values[0].dtype)
        for i, v in enumerate(values):
            mpad[i, : v.size] = v
        mcol = fits.Column(name="MATRIX", format=f"{width}{real}", array=mpad)
    else:
        raise ValueError(matrix_layout)
    return {
        "ENERG_LO": fits.Column(name="ENERG_LO", format=real, unit="keV", array=resp.energ_lo),
        "ENERG_HI": fits.Column(name="ENERG_HI", format=real, unit="keV", array=resp.energ_hi),
        "N_GRP": fits.Column(name="N_GRP", format="I", array=n_grp),
        "F_CHAN": fcol,
        "N_CHAN": ncol,
        "MATRIX": mcol,
    }


@pytest.fixture
def make_rmf(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a synthetic RMF into tmp_path; see ``rmf_columns`` for layouts.

    Keyword arguments: name, first_channel, tlmin (write TLMIN of F_CHAN),
    chan_layout, matrix_layout, float32, extname, detchans (None: omit),
    ebounds (False: omit the extension), edit (callable given the dict of
    MATRIX columns, may replace some), keywords (extra MATRIX keywords).
    """

    def make(
        resp: SyntheticResponse,
        *,
        name: str = "synthetic.rmf",
        first_channel: int = 1,
        tlmin: bool = True,
        chan_layout: str = "vla",
        matrix_layout: str = "vla",
        float32: bool = False,
        extname: str = "MATRIX",
        detchans: int | str | None = "auto",
        ebounds: bool = True,
        edit: Callable[[dict[str, fits.Column]], None] | None = None,
        keywords: dict | None = None,
    ) -> Path:
        cols = rmf_columns(
            resp,
            first_channel=first_channel,
            chan_layout=chan_layout,
            matrix_layout=matrix_layout,
            float32=float32,
        )
        if edit is not None:
            edit(cols)
        header = {"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "RSP_MATRIX"}
        if detchans == "auto":
            header["DETCHANS"] = resp.n_channel
        elif detchans is not None:
            header["DETCHANS"] = detchans
        names = list(cols)
        if tlmin:
            header[f"TLMIN{names.index('F_CHAN') + 1}"] = first_channel
        header.update(keywords or {})
        extensions = [(extname, list(cols.values()), header)]
        if ebounds:
            channel = np.arange(first_channel, first_channel + resp.n_channel, dtype=np.int32)
            extensions.append(
                (
                    "EBOUNDS",
                    [
                        fits.Column(name="CHANNEL", format="J", array=channel),
                        fits.Column(name="E_MIN", format="E", unit="keV", array=resp.e_min),
                        fits.Column(name="E_MAX", format="E", unit="keV", array=resp.e_max),
                    ],
                    {"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "EBOUNDS"},
                )
            )
        return write_table(tmp_path / name, extensions)

    return make


@pytest.fixture
def make_arf(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing an ARF from columns given as name=(TFORM, array, unit) keywords.

    Defaults to a valid 5-bin ARF; pass a column as None to leave it out.
    """

    def make(name: str = "synthetic.arf", extname: str = "SPECRESP", **columns) -> Path:
        spec = {
            "ENERG_LO": ("E", np.array([0.1, 0.2, 0.3, 0.4, 0.5]), "keV"),
            "ENERG_HI": ("E", np.array([0.2, 0.3, 0.4, 0.5, 0.6]), "keV"),
            "SPECRESP": ("E", np.array([10.0, 20.0, 30.0, 20.0, 0.0]), "cm**2"),
        }
        spec.update(columns)
        cols = []
        for key, value in spec.items():
            if value is not None:
                fmt, arr, unit = value
                cols.append(fits.Column(name=key, format=fmt, array=arr, unit=unit))
        return write_table(tmp_path / name, [(extname, cols, {"TELESCOP": "TEST"})])

    return make


@pytest.fixture
def make_pha(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a type I PHA: columns as name=array (None drops), keywords as a dict."""

    def make(name: str = "synthetic.pha", keywords: dict | None = None, **columns) -> Path:
        n = 8
        spec: dict[str, np.ndarray | None] = {
            "CHANNEL": np.arange(1, n + 1, dtype=np.int32),
            "COUNTS": np.arange(n, dtype=np.int32) * 3,
        }
        spec.update(columns)
        cols = [
            fits.Column(name=key, format="J" if arr.dtype.kind in "iu" else "D", array=arr)
            for key, arr in spec.items()
            if arr is not None
        ]
        header = {"HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "EXPOSURE": 1000.0}
        header.update(keywords or {})
        header = {k: v for k, v in header.items() if v is not None}
        return write_table(tmp_path / name, [("SPECTRUM", cols, header)])

    return make


# --------------------------------------------------------------------------- MPI
def _mpi_size() -> int:
    """Ranks in MPI_COMM_WORLD when launched by mpirun, else 1 (mpi4py not imported)."""
    import os

    markers = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
    launched = any(k in os.environ for k in markers)
    if not launched:
        return 1
    try:
        from mpi4py import MPI
    except ImportError:
        return 1
    return MPI.COMM_WORLD.Get_size()


def pytest_configure(config):
    """Under mpirun, give each rank its own temporary root.

    Ranks that share pytest's default root race to prune each other's old
    numbered directories (seen as an unclosed-scandir warning at exit).
    """
    import os
    import tempfile

    rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK"))
    if rank is not None and not config.option.basetemp:
        # one fixed root per rank and user: pytest empties it at the start of each run
        root = Path(tempfile.gettempdir()) / f"xrmod-pytest-{os.getuid()}-rank{rank}"
        config.option.basetemp = str(root)


def pytest_collection_modifyitems(config, items):
    """Skip ``mpi`` tests, visibly, unless running under mpirun with two or more ranks."""
    if _mpi_size() >= 2:
        return
    skip = pytest.mark.skip(reason="needs mpirun -n 2 (run by .ci/run: mpirun -n 2 pytest -m mpi)")
    for item in items:
        if "mpi" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- PyXSPEC
#: Set to 1 (CI's HEASoft step does) to make a test marked ``xspec`` fail, not skip,
#: where PyXSPEC cannot run.
REQUIRE_XSPEC_ENV = "XRMOD_REQUIRE_XSPEC"


@functools.cache
def _pyxspec_problem() -> str | None:
    """Why real PyXSPEC cannot run here (found without importing it), or None."""
    import importlib.util
    import os

    if importlib.util.find_spec("xspec") is None:
        return "PyXSPEC not importable"
    if not os.environ.get("HEADAS"):
        return "HEADAS is not set (PyXSPEC needs HEASoft's environment)"
    return None


def pytest_runtest_setup(item):
    """Tests marked ``xspec`` need real PyXSPEC: skip visibly, or fail when CI requires it."""
    import os

    if "xspec" not in item.keywords:
        return
    problem = _pyxspec_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_XSPEC_ENV) == "1":
        pytest.fail(f"{problem}, and {REQUIRE_XSPEC_ENV}=1 requires it", pytrace=False)
    pytest.skip(f"{problem}: run inside the xrmod container or HEASoft's environment")
