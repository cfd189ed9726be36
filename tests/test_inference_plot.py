"""``xrmod infer --plot``: the corner plot and the predictive, each case rendered and read back."""

import dataclasses
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("corner")
pytest.importorskip("emcee")

from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.image import imread

from xrmod.analysis import inference_plot
from xrmod.analysis.emulator import Emulator
from xrmod.analysis.inference import infer
from xrmod.analysis.inference_plot import BEST, inference_figure, plot_inference
from xrmod.analysis.plot import DPI
from xrmod.errors import InputError, XrmodError

CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[instrument]
exposure = 20000.0
band = {band}
[source]
temperatures = {{ start = 1.0, stop = 12.0, num = 5, spacing = "log" }}
[modifier]
family = "{family}"
[modifier.axes]
{axes}
"""
TILT = "index = [-0.2, -0.1, 0.0, 0.1, 0.2]\npivot = [1.0, 3.0, 6.0]"
GAUSSIAN = "mu = [1.0, 2.0, 4.0]\nsigma = [0.3, 0.6, 1.0]\namp = [-0.3, 0.0, 0.3]"
#: The distortion the observations are drawn from.
TRUTH = {"index": 0.1, "pivot": 3.0}
STEPS = 200


def _build(tmp, name, family, axes, band=(0.5, 10.0)):
    from xrmod import driver

    cfg, out = tmp / f"{name}.toml", tmp / f"{name}.h5"
    cfg.write_text(CONFIG.format(out=out, band=list(band), family=family, axes=axes))
    assert driver.generate(cfg, progress=False) == 0
    return str(out)


def _observations(path, libraries, *, n=8, seed=1, outlier=None):
    """Sources seen through *libraries* ({band text or None: library}) at TRUTH, 5 % errors.

    T_obs has asymmetric bounds (-0.8σ, +1.3σ of 5 %), T_ref a 2 % error; *outlier*: the row
    whose T_obs is doubled.
    """
    rng = np.random.default_rng(seed)
    bands = any(band is not None for band in libraries)
    lines = ["name," + ("band," if bands else "") + "T_ref,T_ref_err,T_obs,T_obs_lo,T_obs_hi"]
    for k, (band, lib) in enumerate(libraries.items()):
        kT = np.geomspace(1.5, 10.0, n)
        t1 = np.asarray(Emulator.from_library(lib).predict(kT_true=kT, **TRUTH).T1)
        err = 0.05 * t1
        t_obs = t1 + err * rng.standard_normal(n)
        for i in range(n):
            name = f"src{k}-{i}"
            if name == outlier:
                t_obs[i] *= 2.0
            row = [name, *([band] if bands else [])]
            row += [f"{kT[i]:.4f}", f"{0.02 * kT[i]:.4f}", f"{t_obs[i]:.4f}"]
            row += [f"{t_obs[i] - 0.8 * err[i]:.4f}", f"{t_obs[i] + 1.3 * err[i]:.4f}"]
            lines.append(",".join(row))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Asimov libraries (tilt 5 x 3 in two bands, gaussian 3 x 3 x 3; 5 kT) and observations."""
    tmp = tmp_path_factory.mktemp("inference_plot")
    tilt = _build(tmp, "tilt", "tilt", TILT)
    hard = _build(tmp, "tilt_hard", "tilt", TILT, band=(2.0, 10.0))
    gauss = _build(tmp, "gauss", "gaussian", GAUSSIAN)
    return {
        "tilt": tilt,
        "hard": hard,
        "gauss": gauss,
        "obs": _observations(tmp / "obs.csv", {None: tilt}, n=12),
        "bands": _observations(tmp / "bands.csv", {"0.5-10": tilt, "2-10": hard}),
        "outlier": _observations(tmp / "outlier.csv", {None: tilt}, outlier="src0-5"),
    }


#: name -> (libraries, observations, options) of infer
CASES = {
    "one": (["tilt"], "obs", {"fixed": {"pivot": 3.0}}),
    "two": (["tilt"], "obs", {"scatter": True}),  # pivot is inert: index and scatter
    "scatter": (["gauss"], "obs", {"fixed": {"sigma": 0.6}, "scatter": True}),
    "gaussian": (["gauss"], "obs", {}),
    "none": (["tilt"], "obs", {"fixed": {"pivot": 3.0, "index": 0.1}}),
    "bands": (["tilt", "hard"], "bands", {}),
    "ranked": (["tilt", "gauss"], "obs", {}),
    "outlier": (["tilt"], "outlier", {"fixed": {"pivot": 3.0}}),
}


@pytest.fixture(scope="module")
def results(files):
    """Each case's InferenceResult, computed once when first asked for."""
    cache = {}

    def get(case):
        if case not in cache:
            libs, obs, options = CASES[case]
            cache[case] = infer(
                [files[name] for name in libs],
                files[obs],
                steps=STEPS,
                evidence=False,
                **options,
            )
        return cache[case]

    return get


def _assert_not_blank(png):
    """As tests/test_plot.py: not one colour, many colours."""
    rgb = imread(png)[..., :3]
    assert rgb.std() > 0.05
    colours = np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, len(colours)


def _panel(fig, band=0):
    (ax,) = [a for a in fig.axes if a.get_gid() == f"predictive-{band}"]
    return ax


def _corner_axes(fig, k):
    axes = fig.subfigs[0].axes
    assert len(axes) == k * k
    return np.array(axes).reshape(k, k)


def _line(ax, label):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def _summary_text(fig):
    (ax,) = [a for a in fig.axes if a.get_gid() == "summary"]
    return ax.texts[0].get_text()


# --------------------------------------------------------------------------- the files
@pytest.mark.parametrize("case", ["one", "two", "scatter", "gaussian", "none", "bands", "ranked"])
def test_each_case_renders_to_a_png_that_is_not_blank(results, tmp_path, case):
    result = results(case)
    out = tmp_path / f"{case}.png"
    assert plot_inference(result, out) == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _assert_not_blank(out)
    height, width = imread(out).shape[:2]
    assert 6.0 * DPI <= width <= 16.0 * DPI and 6.5 * DPI <= height <= 12.0 * DPI


def test_pdf_and_svg_by_the_suffix(results, tmp_path):
    result = results("two")
    pdf, svg = tmp_path / "posterior.pdf", tmp_path / "posterior.SVG"
    plot_inference(result, pdf)
    plot_inference(result, svg)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(data) > 5000
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 50


@pytest.mark.parametrize(("name", "shown"), [("post.jpg", "'.jpg'"), ("post", "no suffix")])
def test_an_unknown_suffix_is_refused_naming_it(results, tmp_path, name, shown):
    with pytest.raises(InputError, match=rf"{shown}.*\.png, \.pdf or \.svg"):
        plot_inference(results("two"), tmp_path / name)
    assert not (tmp_path / name).exists()


def test_an_unwritable_file_is_an_input_error(results, tmp_path):
    with pytest.raises(InputError, match="cannot write"):
        plot_inference(results("one"), tmp_path / "missing" / "dir" / "post.png")


def test_the_model_drawn_is_chosen_by_its_rank(results):
    result = results("ranked")
    assert [m.family for m in result.models] == ["tilt", "gaussian"]
    first, second = inference_figure(result), inference_figure(result, model=1)
    assert first.get_suptitle().startswith("tilt family: tilt.h5")
    assert second.get_suptitle().startswith("gaussian family (ranked 2): gauss.h5")
    assert len(second.subfigs[0].axes) == 9  # mu, sigma, amp
    with pytest.raises(
        InputError, match=r"model 2: the result has 2 model\(s\), 0 \(the best\) to 1"
    ):
        inference_figure(result, model=2)


# --------------------------------------------------------------------------- the numbers shown
def test_the_points_are_the_observations_with_their_errors(results):
    result = results("two")
    obs = result.observations
    ax = _panel(inference_figure(result))
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    data, _, cols = bars.lines
    np.testing.assert_allclose(data.get_xdata(), obs.T_ref)
    np.testing.assert_allclose(data.get_ydata(), obs.T_obs / obs.T_ref)
    segments = [np.array(s) for c in cols for s in c.get_segments()]
    vertical = [s for s in segments if s[0, 0] == s[1, 0]]
    horizontal = [s for s in segments if s[0, 1] == s[1, 1]]
    assert len(vertical) == len(horizontal) == len(obs)
    low = np.array([s[:, 1].min() for s in vertical])
    high = np.array([s[:, 1].max() for s in vertical])
    np.testing.assert_allclose(low, (obs.T_obs - obs.sigma_lo) / obs.T_ref)
    np.testing.assert_allclose(high, (obs.T_obs + obs.sigma_hi) / obs.T_ref)
    assert not np.allclose(obs.sigma_lo, obs.sigma_hi)  # asymmetric, each on its side
    left = np.array([s[:, 0].min() for s in horizontal])
    np.testing.assert_allclose(left, obs.T_ref - obs.T_ref_err)
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel().startswith("T_ref (keV)")


def test_the_curve_is_the_posterior_of_t1_over_kt_true(results):
    result = results("two")
    m = result.best
    ax = _panel(inference_figure(result))
    median = _line(ax, "median")
    kT = median.get_xdata()
    expected = m.curve(kT)
    np.testing.assert_allclose(median.get_ydata(), expected["median"])
    np.testing.assert_allclose(_line(ax, "best").get_ydata(), expected["best"])
    assert _line(ax, "best").get_color() == BEST
    for level in ("68", "95"):
        (band,) = [c for c in ax.collections if c.get_label() == f"{level} %"]
        assert isinstance(band, PolyCollection)
        y = band.get_paths()[0].vertices[:, 1]
        assert np.isclose(y.min(), expected[f"lo{level}"].min())
        assert np.isclose(y.max(), expected[f"hi{level}"].max())
    assert (expected["lo95"] <= expected["lo68"]).all()
    assert (expected["hi68"] <= expected["hi95"]).all()
    # the curve spans the observations, inside the library's temperatures
    obs = result.observations
    assert kT.min() <= obs.T_ref.min() and kT.max() >= obs.T_ref.max()
    assert kT.min() >= 1.0 and kT.max() <= 12.0
    (one,) = [line for line in ax.get_lines() if line.get_label() == "no distortion"]
    assert set(one.get_ydata()) == {1.0}


def test_one_panel_per_band_with_the_rows_and_library_of_that_band(results):
    result = results("bands")
    m = result.best
    assert len(m.emulators) == 2
    fig = inference_figure(result)
    obs = result.observations
    for b, (band, lib) in enumerate([((0.5, 10.0), "tilt.h5"), ((2.0, 10.0), "tilt_hard.h5")]):
        ax = _panel(fig, b)
        rows = np.all(np.isclose(obs.band, band), axis=1)
        (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        np.testing.assert_allclose(bars.lines[0].get_xdata(), obs.T_ref[rows])
        np.testing.assert_allclose(bars.lines[0].get_ydata(), (obs.T_obs / obs.T_ref)[rows])
        median = _line(ax, "median")
        np.testing.assert_allclose(median.get_ydata(), m.curve(median.get_xdata(), b)["median"])
        assert (
            ax.get_title() == f"band {band[0]:g}\N{EN DASH}{band[1]:g} keV: {lib} (8 observations)"
        )
    # the harder band sees less of the distortion at low energy: its own library, not band 0's
    low = [_line(_panel(fig, b), "median").get_ydata()[0] for b in (0, 1)]
    assert low[1] < low[0]
    assert fig.get_suptitle().startswith("tilt family: tilt.h5, tilt_hard.h5")
    assert _panel(fig, 1).get_xlabel() and not _panel(fig, 0).get_xlabel()


def test_the_corner_plot_shows_the_samples_and_marks_the_best(results, monkeypatch):
    import corner

    calls = []
    real = corner.corner

    def spy(samples, **kwargs):
        calls.append((samples, kwargs))
        return real(samples, **kwargs)

    monkeypatch.setattr(corner, "corner", spy)
    result = results("scatter")
    m = result.best
    assert m.names == ["mu", "amp", "scatter"]
    fig = inference_figure(result)
    ((samples, kwargs),) = calls
    assert samples is m.samples
    assert kwargs["labels"] == ["mu (keV)", "amp", "scatter"]
    assert tuple(kwargs["levels"]) == (0.68, 0.95)
    assert tuple(kwargs["quantiles"]) == (0.16, 0.5, 0.84) and kwargs["show_titles"]
    axes = _corner_axes(fig, 3)
    for j, name in enumerate(m.names):
        diagonal = axes[j, j]
        assert diagonal.get_title().startswith(f"{name} = ")
        best = [line for line in diagonal.get_lines() if line.get_color() == BEST]
        assert best and np.allclose(best[0].get_xdata(), m.best[j])
        lo, hi = diagonal.get_xlim()
        assert lo < m.best[j] < hi  # the line at the best is inside the plot
        median = np.median(m.samples[:, j])
        dashed = [
            line.get_xdata()[0] for line in diagonal.get_lines() if line.get_linestyle() == "--"
        ]
        assert np.isclose(sorted(dashed)[1], median)
    assert axes[2, 0].get_ylabel() == "scatter" and axes[2, 1].get_xlabel() == "amp"
    legend = fig.subfigs[0].legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert "best fit (max. posterior)" in labels and "68 %, 95 % contours" in labels
    assert legend.legend_handles[0].get_color() == BEST


def test_one_free_parameter_is_a_histogram_and_none_is_the_panel_alone(results):
    one = results("one")
    fig = inference_figure(one)
    (ax,) = fig.subfigs[0].axes
    assert ax.get_title().startswith("index = ")
    best = [line for line in ax.get_lines() if line.get_color() == BEST]
    assert np.allclose(best[0].get_xdata(), one.best.best[0])
    assert "fixed: pivot = 3 keV" in _summary_text(fig)

    none = results("none")
    assert none.best.names == []
    fig = inference_figure(none)
    assert sorted(a.get_gid() for a in fig.axes) == ["predictive-0", "summary"]
    ax = _panel(fig)
    labels = {line.get_label() for line in ax.get_lines()}
    assert "best" in labels and "median" not in labels  # one θ: no band
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    text = _summary_text(fig)
    assert "(no free parameter)" in text and "fixed: index = 0.1, pivot = 3 keV" in text
    assert fig.get_size_inches()[0] < 8


def test_the_ranking_box_lists_every_model_and_marks_the_one_drawn(results):
    result = results("ranked")
    text = _summary_text(inference_figure(result, model=1))
    lines = text.splitlines()
    assert lines[0].startswith("χ² = ")
    assert "ranking by BIC" in text
    (tilt,) = [line for line in lines if "tilt (tilt.h5)" in line]
    (gauss,) = [line for line in lines if "gaussian (gauss.h5)" in line]
    assert tilt.startswith(" 1.") and tilt.rstrip().endswith("best")
    assert gauss.startswith("\N{BLACK RIGHT-POINTING TRIANGLE}2.")
    log_b = result.ranking()[1]["log_bayes_factor_best"]
    assert f"ln B = {log_b:.2f}" in gauss and result.ranking()[1]["strength"] in gauss
    assert "against no distortion" in lines[-1]
    assert "ranking" not in _summary_text(inference_figure(results("two")))


def test_with_the_evidence_the_ranking_gives_ln_z(results):
    ranked = results("ranked")
    models = [
        dataclasses.replace(m, evidence={"log_z": z, "log_z_err": 0.1})
        for m, z in zip(ranked.models, (-3.0, -9.5), strict=True)
    ]
    result = dataclasses.replace(ranked, models=models)
    lines = _summary_text(inference_figure(result)).splitlines()
    assert lines[0].endswith("; ln Z = -3.00 ± 0.10")
    assert "fixed: pivot = 3 keV" in lines  # tilt's pivot: inert, held fixed
    i = next(k for k, line in enumerate(lines) if line.startswith("ranking by evidence"))
    assert lines[i + 2].split() == "2. gaussian (gauss.h5) ln Z = -9.50 ln B = 6.50 strong".split()


def test_an_observation_the_model_does_not_explain_is_ringed_and_named(results):
    result = results("outlier")
    p = {row["name"]: row["p_value"] for row in result.best.predictive()}
    assert p["src0-5"] < 0.01
    ax = _panel(inference_figure(result))
    ring = _line(ax, "not explained")
    obs = result.observations
    i = obs.names.index("src0-5")
    assert (obs.T_ref[i], obs.T_obs[i] / obs.T_ref[i]) in set(
        zip(ring.get_xdata(), ring.get_ydata(), strict=True)
    )
    assert "src0-5" in [t.get_text() for t in ax.texts]


# --------------------------------------------------------------------------- packaging
def test_matplotlib_only_when_drawing_and_no_pyplot_figure(files, tmp_path):
    code = (
        "import sys\n"
        "from xrmod.analysis import inference_plot\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        "from xrmod.analysis.inference import infer\n"
        f"r = infer([{files['tilt']!r}], {files['obs']!r}, steps=100, evidence=False)\n"
        f"inference_plot.plot_inference(r, {str(tmp_path / 'x.png')!r})\n"
        "assert 'corner' in sys.modules and 'matplotlib' in sys.modules\n"
        "import matplotlib.pyplot as plt\n"
        "assert plt.get_fignums() == [], 'a figure was left with pyplot'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "agg"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.png").stat().st_size > 10000


def test_without_corner_the_message_names_the_extra(results, monkeypatch):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "corner" else find(name)
    )
    with pytest.raises(XrmodError, match=r"needs corner: pip install 'xrmod\[infer\]'"):
        inference_plot.inference_figure(results("one"))
