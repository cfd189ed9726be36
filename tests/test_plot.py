"""``xrmod plot``: each figure rendered, the numbers it shows against the file, bad options."""

import logging
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("xarray")

from matplotlib.collections import QuadMesh
from matplotlib.image import imread

from xrmod import open_library
from xrmod.analysis import plot
from xrmod.analysis.plot import (
    choose_view,
    contour_levels,
    parse_at,
    plot_library,
)
from xrmod.cli import main
from xrmod.errors import InputError
from xrmod.status import Status

CONFIG = """\
[library]
output = "{out}"
noise = "{noise}"
realizations = {realizations}
seed = 9
[instrument]
exposure = 20000.0
[source]
temperatures = {{ start = 1.0, stop = 12.0, num = 5, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = [1.0, 2.0, 4.0, 6.0]
sigma = [0.2, 0.5, 1.0]
amp = {amp}
"""


def _build(tmp, name, *, noise="asimov", realizations=1, amp="[-1.5, -0.2, 0.0, 0.2]"):
    from xrmod import driver

    cfg = tmp / f"{name}.toml"
    out = tmp / f"{name}.h5"
    cfg.write_text(CONFIG.format(out=out, noise=noise, realizations=realizations, amp=amp))
    assert driver.generate(cfg, progress=False) == 0
    return out


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Asimov, 4 x 3 x 4 θ x 5 kT; amp = -1.5 makes the ARF negative (status -1, NaN)."""
    return _build(tmp_path_factory.mktemp("plot"), "lib")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Poisson, 2 realizations."""
    return _build(tmp_path_factory.mktemp("noisy"), "noisy", noise="poisson", realizations=2)


def _read(path):
    with h5py.File(path, "r") as f:
        return {
            "T1": f["LIBRARY/results"][..., 1],
            "T1_lo": f["LIBRARY/results"][..., 0],
            "T1_hi": f["LIBRARY/results"][..., 2],
            "T1m": f["LIBRARY/results_modified"][..., 1],
            "status": f["LIBRARY/status"][()],
            "status_modified": f["LIBRARY/status_modified"][()],
            "temps": f["LIBRARY/temps"][()],
            **{a: f[f"PARAMS/{a}"][()] for a in ("mu", "sigma", "amp")},
        }


def _mesh(ax):
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    return mesh.get_array()


def _assert_not_blank(png, fig):
    image = imread(png)
    width, height = (fig.get_size_inches() * plot.DPI).round().astype(int)
    assert image.shape[:2] == (height, width), image.shape
    rgb = image[..., :3]
    assert rgb.std() > 0.05  # not one flat colour
    colours = np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, len(colours)


# --------------------------------------------------------------------------- the files
@pytest.mark.parametrize("kind", ["all", "map", "curves", "status"])
def test_each_kind_renders_to_a_png_that_is_not_blank(lib, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    fig = plot_library(lib, out, kind=kind)
    _assert_not_blank(out, fig)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pdf_and_svg_by_the_suffix(lib, tmp_path):
    pdf, svg = tmp_path / "map.pdf", tmp_path / "curves.SVG"
    plot_library(lib, pdf, kind="map")
    plot_library(lib, svg, kind="curves")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(data) > 5000
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 20


def test_the_command_line_writes_the_default_file_here(lib, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(lib)]) == 0
    assert (tmp_path / "lib.png").stat().st_size > 10000
    assert main(["plot", str(lib), "--kind", "status"]) == 0
    assert (tmp_path / "lib-status.png").exists()
    out = tmp_path / "sel.png"
    args = ["plot", str(lib), "-o", str(out), "--x", "amp", "--y", "kT_true"]
    assert main([*args, "--at", "mu=4", "--at", "sigma=0.5", "--kind", "map"]) == 0
    assert out.exists()


# --------------------------------------------------------------------------- the numbers shown
def test_default_slice_follows_the_documented_rule(lib):
    with open_library(lib) as ds:
        view = choose_view(ds)
    assert (view.x, view.y) == ("mu", "sigma")  # the first two axes with several values
    # amp: a strength axis; largest |amp| is -1.5, whose points all failed: next is 0.2 (the
    # positive of the two 0.2s); sigma (the map's y, fixed for the curves) and the kT: the
    # middle of their grids
    assert view.fixed == {"amp": 3, "sigma": 1} and view.kT_index == 2
    assert view.realizations == 1


def test_the_bias_map_shows_t1_over_kt_from_the_file(lib):
    d = _read(lib)
    fig = plot_library(lib, kind="map", at={"amp": 0.2}, kT=float(d["temps"][1]))
    ax = fig.axes[0]
    expected = d["T1"][:, :, 3, 1] / d["temps"][1]  # (mu, sigma) at amp = 0.2
    np.testing.assert_allclose(_mesh(ax), expected.T)  # rows: y = sigma
    assert ax.get_xlabel() == "mu (keV)" and ax.get_ylabel() == "sigma (keV)"
    assert "kT_true = 1.861 keV" in ax.get_title() and "amp = 0.2" in ax.get_title()
    (bar,) = [a for a in fig.axes if a.get_ylabel() == "T1 / kT_true"]
    lo, hi = bar.get_ylim()
    assert lo * hi == pytest.approx(1.0)  # centred on 1 (in log ratio)
    assert hi >= np.nanmax(np.maximum(expected, 1 / expected)) - 1e-12


def test_failed_points_are_blank_in_the_map_not_a_colour(lib):
    d = _read(lib)
    fig = plot_library(lib, kind="map", x="mu", y="amp", at={"sigma": 0.5})
    ax = fig.axes[0]
    z = _mesh(ax)
    t1 = d["T1"][:, 1, :, 2]  # (mu, amp) at sigma = 0.5, the middle kT
    assert np.isnan(t1[:, 0]).all()  # amp = -1.5: ARF negative
    np.testing.assert_array_equal(np.ma.getmaskarray(z), np.isnan(t1.T))
    assert any(p.get_hatch() for p in ax.patches)  # under the mesh: shows where masked
    # amp's steps differ by more than a factor 3: equal cells, ticks at its values
    assert [t.get_text() for t in ax.get_yticklabels()] == ["-1.5", "-0.2", "0", "0.2"]
    np.testing.assert_array_equal(ax.get_yticks(), [0, 1, 2, 3])
    (legend,) = [a.get_legend() for a in fig.axes if a.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == ["no T1 (failed: see the status map)"]


def test_the_curves_show_t1_t1_prime_and_the_bounds(lib):
    d = _read(lib)
    fig = plot_library(lib, kind="curves", at={"amp": 0.2, "sigma": 1.0})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "kT_true (keV)"
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [line.get_label() for line in solid] == [f"mu = {m:g} keV" for m in d["mu"]]
    for i, (t1, t1m) in enumerate(zip(solid, dashed, strict=True)):
        np.testing.assert_allclose(t1.get_xdata(), d["temps"])
        np.testing.assert_allclose(t1.get_ydata(), d["T1"][i, 2, 3] / d["temps"])
        np.testing.assert_allclose(t1m.get_ydata(), d["T1m"][i, 2, 3] / d["temps"])
        np.testing.assert_allclose(t1m.get_ydata(), 1.0, atol=0.02)  # asimov T1' ≈ kT_true
    bands = ax.collections
    assert len(bands) == 4
    for i, band in enumerate(bands):
        y = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        lo, hi = d["T1_lo"][i, 2, 3] / d["temps"], d["T1_hi"][i, 2, 3] / d["temps"]
        assert y.min() == pytest.approx(np.nanmin(lo)) and y.max() == pytest.approx(np.nanmax(hi))
    assert any(line.get_ydata()[0] == 1.0 for line in ax.lines if line.get_linestyle() == ":")


def test_curves_skip_values_where_every_t1_failed_and_say_so(lib):
    fig = plot_library(lib, kind="curves", x="amp", at={"mu": 2.0, "sigma": 0.5})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["amp = -0.2", "amp = 0", "amp = 0.2"]
    assert "no T1 at amp = -1.5" in labels


def test_the_status_map_shows_the_worst_code_over_kt_per_fit(lib):
    d = _read(lib)
    fig = plot_library(lib, kind="status", x="mu", y="amp", at={"sigma": 0.5})
    t1_ax, t1m_ax = [a for a in fig.axes if a.get_title().startswith("status of")]
    assert "T1′" in t1m_ax.get_title() and "worst over the 5 kT_true" in t1_ax.get_title()
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    for name, ax in (("status", t1_ax), ("status_modified", t1m_ax)):
        codes = d[name][:, 1, :, :]  # (mu, amp, kT)
        present = [c for c in plot.STATUS_ORDER if (codes == c).any()]
        worst = np.array(
            [[min(plot.STATUS_ORDER.index(c) for c in cell) for cell in row] for row in codes]
        )
        shown = [plot.STATUS_ORDER[i] for i in np.unique(worst)]
        assert set(shown) <= set(present)
        # the mesh holds each cell's place among the legend's codes
        legend_codes = [int(label.split(":")[0]) for label in labels]
        got = np.array(legend_codes)[np.asarray(_mesh(ax)).astype(int)]
        np.testing.assert_array_equal(got, np.array(plot.STATUS_ORDER)[worst].T)
        counts = {t.get_text() for t in ax.texts}
        assert counts == {str(n) for n in (codes != Status.OK).sum(axis=-1).ravel() if n}
    assert "-1: ARF_NEGATIVE" in labels and "1: OK" in labels


def test_realizations_are_averaged_or_selected(noisy):
    with h5py.File(noisy, "r") as f:
        t1 = f["LIBRARY/results"][..., 1]  # (mu, sigma, amp, realization, kT)
        temps = f["LIBRARY/temps"][()]
    fig = plot_library(noisy, kind="map", at={"amp": -0.2})
    ax = fig.axes[0]
    assert "mean of 2 realizations" in ax.get_title()
    mean = np.nanmean(t1[:, :, 1, :, 2], axis=-1) / temps[2]
    np.testing.assert_allclose(_mesh(ax), mean.T)
    fig = plot_library(noisy, kind="map", at={"amp": -0.2, "realization": 1})
    ax = fig.axes[0]
    assert "realization 1" in ax.get_title()
    np.testing.assert_allclose(_mesh(ax), (t1[:, :, 1, 1, 2] / temps[2]).T)
    status = plot_library(noisy, kind="status")
    assert "× 2 realizations" in status.axes[0].get_title()


def test_a_value_near_a_grid_value_is_that_value(lib, caplog):
    caplog.set_level(logging.INFO, logger="xrmod")
    d = _read(lib)
    fig = plot_library(lib, kind="map", kT=3.46, at={"amp": 0.2000001})  # grid: 3.464...
    assert f"kT_true = {d['temps'][2]:.4g} keV" in fig.axes[0].get_title()
    assert "--kT: using the grid value 3.464" in caplog.text


# --------------------------------------------------------------------------- bad options
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"x": "energy"}, "--x: the library has no axis 'energy'; its axes are mu, sigma, amp"),
        ({"y": "foo"}, "--y: the library has no axis 'foo'; its axes are mu, sigma, amp, kT_true"),
        ({"at": {"nH": 1.0}}, "--at nH: the library has no axis 'nH'; its axes are mu, sigma, amp"),
        (
            {"at": {"mu": 3.0}, "x": "amp"},
            "--at mu: 3 is not a value of axis 'mu' (keV); its values are 1, 2, 4, 6",
        ),
        ({"at": {"mu": 2.0}}, "--at mu: 'mu' is the x axis of every figure"),
        ({"at": {"sigma": 0.5}, "kind": "map"}, "--at sigma: 'sigma' is the map's y axis"),
        ({"at": {"realization": 0}}, "--at realization: the library has no axis 'realization'"),
        ({"at": {"kT_true": 2.0}}, "--at kT_true: give the temperature with --kT"),
        ({"kT": 3.0}, "--kT: 3 is not a value of axis 'kT_true' (keV); its values are 1, 1.861"),
        ({"x": "mu", "y": "mu"}, "--x and --y are both 'mu'"),
        ({"kind": "curves", "kT": 2.0}, "--kT: no figure drawn uses it (the curves span every"),
        ({"y": "kT_true", "kT": 2.0}, "--kT: no figure drawn uses it (kT_true is the map's y"),
        ({"kind": "contour"}, "--kind must be one of all, map, curves, status, got 'contour'"),
    ],
)
def test_bad_options_are_refused_naming_the_axis_and_its_values(lib, options, message):
    with pytest.raises(InputError) as info:
        plot_library(lib, **options)
    assert str(info.value).startswith(message), str(info.value)


def test_bad_output_and_at_syntax(lib, tmp_path):
    with pytest.raises(InputError, match=r"x\.jpg: cannot tell the format; .*\.png, \.pdf or"):
        plot_library(lib, tmp_path / "x.jpg")
    with pytest.raises(InputError, match=r"cannot write .*missing.*No such file"):
        plot_library(lib, tmp_path / "missing" / "x.png", kind="map")
    for item in ("mu", "mu=", "=2", "mu=two"):
        with pytest.raises(InputError, match=r"--at expects AXIS=VALUE \(e\.g\. --at mu=6\.4\)"):
            parse_at([item])
    with pytest.raises(InputError, match="--at mu is given twice"):
        parse_at(["mu=1", "mu=2"])
    assert parse_at(["mu=6.4", " sigma =0.3"]) == {"mu": 6.4, "sigma": 0.3}


def test_bad_options_exit_2_with_one_line(lib, tmp_path):
    exe = Path(sys.executable).with_name("xrmod")
    not_a_library = tmp_path / "other.h5"
    h5py.File(not_a_library, "w").close()
    for args, message in (
        (["--at", "amp=0.3"], "--at amp: 0.3 is not a value of axis 'amp'; its values are"),
        (["--x", "nope"], "--x: the library has no axis 'nope'"),
        (["-o", str(tmp_path / "x.gif")], f"{tmp_path / 'x.gif'}: cannot tell the format"),
    ):
        proc = subprocess.run(
            [str(exe), "plot", str(lib), *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"xrmod plot: error: {message}"), proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    proc = subprocess.run(
        [str(exe), "plot", str(not_a_library)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "not an xrmod library" in proc.stderr


# --------------------------------------------------------------------------- helpers
def test_contour_levels_are_balanced_about_1_and_few():
    for lo, hi in ((0.88, 1.13), (0.5, 5.1), (0.7, 1.3), (0.995, 1.004), (0.2, 1.01)):
        levels = contour_levels(lo, hi)
        assert levels and len(levels) <= plot.MAX_LEVELS
        assert all(lo < v < hi for v in levels) and levels == sorted(levels)
        assert 1.0 in levels
        assert set(levels) <= set(plot.CONTOUR_LADDER)
    assert contour_levels(0.88, 1.13) == [0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1]
    assert contour_levels(0.96, 0.99) == [0.98]
    assert contour_levels(1.0, 1.0) == []


@pytest.mark.parametrize(
    ("family", "axes", "strength"),
    [
        ("gaussian", {"mu": [1.0, 2.0], "sigma": [0.5], "amp": [-0.1, 0.1]}, {"amp"}),
        ("tilt", {"index": [-0.1, 0.1], "pivot": [1.0, 3.0]}, {"index"}),
        ("linear", {"slope": [-0.1, 0.1], "pivot": [1.0, 3.0]}, {"slope"}),
        ("edge", {"energy": [2.0], "depth": [-0.1, 0.1], "width": [0.05]}, {"depth"}),
        ("no-such-family", {"a": [1.0]}, set()),
    ],
)
def test_strength_axes_are_those_whose_zero_is_no_distortion(family, axes, strength):
    arrays = {k: np.array(v) for k, v in axes.items()}
    assert plot._strength_axes(family, arrays) == strength


def test_matplotlib_only_when_drawing_and_never_pyplot(lib, tmp_path):
    code = (
        "import sys\n"
        "from xrmod.analysis import plot\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        f"plot.plot_library({str(lib)!r}, {str(tmp_path / 'x.png')!r}, kind='map')\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot (a GUI backend) was loaded'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "MPLBACKEND"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.png").stat().st_size > 10000


def test_without_matplotlib_the_message_names_the_extra(lib, monkeypatch):
    import importlib.util

    from xrmod.errors import XrmodError

    find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find(name)
    )
    with pytest.raises(XrmodError, match=r"plotting needs matplotlib: pip install 'xrmod\[plot\]'"):
        plot_library(lib, kind="map")
