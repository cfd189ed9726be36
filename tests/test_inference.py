"""``xrmod infer``: the likelihood against NumPy, recovery of a θ off the grid, family ranking.

The observations are made independently of the emulator: for each true θ
(never a grid node) a library of that single point with Poisson noise at
several exposures, its T1 and bounds read as an observer's fit — then
inferred back with emulators of Asimov libraries on coarser grids.
"""

import json
import math

import numpy as np
import pytest
from library_helpers import TILT_AXES, build, observe_at, write_csv

pytest.importorskip("emcee")
pytest.importorskip("dynesty")

from xrmod.analysis.emulator import Emulator
from xrmod.analysis.inference import group_by_band, infer, strength
from xrmod.analysis.likelihood import Likelihood, linear_sigma
from xrmod.analysis.observations import read_observations
from xrmod.cli import main
from xrmod.errors import InputError

TEMPS = [1.6, 1.9, 2.3, 2.8, 3.4, 4.1, 5.0, 6.1, 7.4, 8.8]
EXPOSURES = (20000.0, 50000.0, 100000.0)
GAUSS_TRUTH = {"mu": 2.37, "sigma": 0.52, "amp": -0.13}
TILT_TRUTH = {"index": -0.085, "pivot": 1.0}
FAST = {"steps": 1500, "live_points": 200, "seed": 1}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two Asimov libraries (gaussian, tilt) and observations made at a θ off their grids."""
    tmp = tmp_path_factory.mktemp("infer")
    gauss = build(tmp, "gauss")
    tilt = build(tmp, "tilt", family="tilt", axes=TILT_AXES)
    by_gauss = observe_at(tmp, "g", GAUSS_TRUTH, TEMPS, exposures=EXPOSURES)
    by_tilt = observe_at(tmp, "t", TILT_TRUTH, TEMPS, family="tilt", exposures=EXPOSURES)
    return {
        "tmp": tmp,
        "gauss": gauss,
        "tilt": tilt,
        "by_gauss": write_csv(tmp / "by_gauss.csv", by_gauss),
        "by_tilt": write_csv(tmp / "by_tilt.csv", by_tilt),
    }


# --------------------------------------------------------------------------- the likelihood
def test_linear_sigma():
    x, lo, hi = 5.0, 0.2, 0.5
    assert linear_sigma(np.array(x + hi), x, lo, hi) == pytest.approx(hi)
    assert linear_sigma(np.array(x - lo), x, lo, hi) == pytest.approx(lo)
    assert linear_sigma(np.array([1.0, 9.0]), x, 0.3, 0.3) == pytest.approx([0.3, 0.3])
    # beyond the bounds each side keeps its own error (not shrinking towards zero)
    assert linear_sigma(np.array([-100.0, 100.0]), x, lo, hi) == pytest.approx([lo, hi])
    assert linear_sigma(np.array([-100.0, 100.0]), x, hi, lo) == pytest.approx([hi, lo])


def test_likelihood_is_the_documented_formula(made):
    """ln L by hand from the emulator's predictions and gradient, with scatter."""
    em = Emulator.from_library(made["gauss"])
    obs = read_observations(made["by_gauss"])
    like = Likelihood([em], obs, scatter=True)
    assert like.names == ["mu", "sigma", "amp", "scatter"]
    params = np.array([[2.0, 0.5, -0.1, 0.03], [3.1, 0.9, 0.12, 0.0]])
    got = like.log_likelihood(params)
    for row, p in zip(got, params, strict=True):
        theta = dict(zip(("mu", "sigma", "amp"), p[:3], strict=True))
        pred = em.predict(kT_true=obs.T_ref, fits="T1", **theta)
        slope = em.gradient(kT_true=obs.T_ref, **theta)["kT_true"]
        mu = pred.T1
        total = obs.sigma_lo + obs.sigma_hi
        sig = 2 * obs.sigma_lo * obs.sigma_hi / total + (obs.sigma_hi - obs.sigma_lo) / total * (
            mu - obs.T_obs
        )
        small, large = (
            np.minimum(obs.sigma_lo, obs.sigma_hi),
            np.maximum(obs.sigma_lo, obs.sigma_hi),
        )
        sig = np.clip(sig, small, large)
        var = sig**2 + (slope * obs.T_ref_err) ** 2 + pred.T1_error**2 + (p[3] * mu) ** 2
        expected = -0.5 * np.sum((obs.T_obs - mu) ** 2 / var + np.log(2 * math.pi * var))
        assert row == pytest.approx(expected, rel=1e-12)
    assert like.log_prior(np.array([[5.5, 0.5, 0.0, 0.1]]))[0] == -np.inf  # mu off the grid
    inside = like.log_prior(params[:1])[0]
    assert inside == pytest.approx(-math.log((5.0 - 0.8) * (1.0 - 0.3) * 0.4 * 0.5))


def test_fix_and_prior_options(made):
    em = Emulator.from_library(made["gauss"], accuracy=False)
    obs = read_observations(made["by_gauss"])
    like = Likelihood([em], obs, fixed={"sigma": 0.5}, priors={"mu": (1.0, 4.0)})
    assert like.names == ["mu", "amp"]
    assert (like.lower[0], like.upper[0]) == (1.0, 4.0)
    np.testing.assert_array_equal(like.theta(np.array([[2.0, -0.1]])), [[2.0, 0.5, -0.1]])
    with pytest.raises(InputError, match=r"unknown axis 'nu' \(the library's free axes"):
        Likelihood([em], obs, fixed={"nu": 1.0})
    with pytest.raises(InputError, match=r"--fix sigma=2 is outside the grid \[0.3, 1\] keV"):
        Likelihood([em], obs, fixed={"sigma": 2.0})
    with pytest.raises(InputError, match=r"prior mu in \[0, 4\] must be a range inside the grid"):
        Likelihood([em], obs, priors={"mu": (0.0, 4.0)})


def test_t_ref_outside_the_library_names_the_row(made, tmp_path):
    csv = tmp_path / "far.csv"
    csv.write_text("name,T_ref,T_obs,T_obs_err\nA85,3.0,2.9,0.1\nA2029,12.5,11.0,0.4\n")
    with pytest.raises(InputError, match=r"far.csv, line 3 \(A2029\): T_ref = 12.5 keV is outside"):
        infer([made["gauss"]], csv, evidence=False, steps=200)


# --------------------------------------------------------------------------- recovery
@pytest.fixture(scope="module")
def gauss_vs_tilt(made):
    return infer([made["gauss"], made["tilt"]], made["by_gauss"], **FAST)


@pytest.fixture(scope="module")
def tilt_vs_gauss(made):
    return infer([made["gauss"], made["tilt"]], made["by_tilt"], **FAST)


def test_recovers_a_gaussian_off_the_grid(gauss_vs_tilt):
    model = gauss_vs_tilt.best
    assert model.family == "gaussian"
    summary = model.summary()
    for name, truth in GAUSS_TRUTH.items():
        lo, hi = summary[name]["ci95"]
        assert lo <= truth <= hi, (name, truth, summary[name])
    # the amplitude is constrained: its 95 % interval excludes no distortion
    assert summary["amp"]["ci95"][1] < 0
    gof = model.goodness_of_fit()
    assert gof["dof"] == 30 - 3 and gof["p_value"] > 0.01


def test_recovers_a_tilt_off_the_grid(tilt_vs_gauss):
    model = tilt_vs_gauss.best
    assert model.family == "tilt"
    lo, hi = model.summary()["index"]["ci95"]
    assert lo <= TILT_TRUTH["index"] <= hi
    assert hi - lo < 0.02  # a real constraint: the grid step is 0.06-0.08


def test_family_comparison_picks_the_family_that_made_the_data(gauss_vs_tilt, tilt_vs_gauss):
    for result, winner, loser in ((gauss_vs_tilt, "gaussian", "tilt"),
                                  (tilt_vs_gauss, "tilt", "gaussian")):  # fmt: skip
        ranking = result.ranking()
        assert [r["family"] for r in ranking] == [winner, loser]
        assert ranking[0]["strength"] == "best"
        log_b = ranking[1]["log_bayes_factor_best"]
        assert log_b == pytest.approx(ranking[0]["log_evidence"] - ranking[1]["log_evidence"])
        assert log_b > 2.5 and ranking[1]["strength"] in ("moderate", "strong")
        # and no distortion at all is far worse
        assert result.baseline["log_bayes_factor_best"] > 10
        assert result.baseline["strength"] == "strong"


def test_strength_wording():
    assert [strength(x) for x in (0.5, 1.5, 3.0, 7.0)] == [
        "inconclusive",
        "weak",
        "moderate",
        "strong",
    ]


def test_no_evidence_ranks_by_bic(made):
    result = infer([made["gauss"], made["tilt"]], made["by_tilt"], evidence=False, steps=800)
    ranking = result.ranking()
    assert {r["criterion"] for r in ranking} == {"bic"}
    bics = [r["bic"] for r in ranking]
    assert bics == sorted(bics) and ranking[0]["family"] == "tilt"
    assert "log_evidence" not in ranking[0]


def test_same_seed_same_result(made):
    a = infer([made["tilt"]], made["by_tilt"], steps=400, live_points=100, seed=3).as_dict()
    b = infer([made["tilt"]], made["by_tilt"], steps=400, live_points=100, seed=3).as_dict()
    a.pop("seconds"), b.pop("seconds")
    for m in (*a["models"], *b["models"]):
        m["sampler"].pop("seconds"), m["evidence"].pop("seconds")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_scatter_is_found_when_the_data_have_it(made, tmp_path):
    """Observations scattered by 8 % more than their errors say: the scatter posterior sees it."""
    rows = read_observations(made["by_tilt"])
    rng = np.random.default_rng(2)
    noisy = tmp_path / "scatter.csv"
    lines = ["T_ref,T_ref_err,T_obs,T_obs_err"]
    for t, e, o, lo, hi in zip(rows.T_ref, rows.T_ref_err, rows.T_obs, rows.sigma_lo,
                               rows.sigma_hi, strict=True):  # fmt: skip
        lines.append(f"{t},{e},{o * (1 + 0.08 * rng.standard_normal())},{(lo + hi) / 2}")
    noisy.write_text("\n".join(lines) + "\n")
    result = infer([made["tilt"]], noisy, scatter=True, evidence=False, steps=1500)
    s = result.best.summary()["scatter"]
    assert 0.04 < s["median"] < 0.14 and s["ci95"][0] > 0.02


# --------------------------------------------------------------------------- bands
def test_libraries_per_band_form_one_model(made):
    tmp = made["tmp"]
    hard = build(tmp, "gauss-hard", band=(2.0, 7.0))
    soft_rows = observe_at(tmp, "gs", GAUSS_TRUTH, TEMPS[::2], exposures=(50000.0,))
    hard_rows = observe_at(tmp, "gh", GAUSS_TRUTH, TEMPS[::2], band=(2.0, 7.0), seed=9)
    columns = ["name", "band", "T_ref", "T_ref_err", "T_obs", "T_obs_lo", "T_obs_hi"]
    csv = write_csv(tmp / "bands.csv", soft_rows + hard_rows, columns)
    obs = read_observations(csv)
    assert obs.has_bands
    emulators = [Emulator.from_library(p, accuracy=False) for p in (made["gauss"], hard)]
    ((members, band_of),) = group_by_band(emulators, obs)
    assert len(members) == 2
    np.testing.assert_array_equal(band_of, [0] * len(soft_rows) + [1] * len(hard_rows))
    result = infer([made["gauss"], hard], csv, steps=1200, evidence=False, seed=2)
    assert len(result.models) == 1 and len(result.best.libraries) == 2
    summary = result.best.summary()
    for name, truth in GAUSS_TRUTH.items():
        lo, hi = summary[name]["ci95"]
        assert lo <= truth <= hi, (name, summary[name])
    # one band alone: its rows selected, the other band's library not needed
    soft = infer([made["gauss"]], csv, bands=["0.5-10"], evidence=False, steps=300)
    assert len(soft.observations) == len(soft_rows)
    with pytest.raises(InputError, match=r"no gaussian library for the band 2-7 keV"):
        infer([made["gauss"]], csv, evidence=False, steps=300)
    with pytest.raises(InputError, match=r"no observation in the band\(s\) 1-3"):
        infer([made["gauss"]], csv, bands=["1-3"], evidence=False, steps=300)
    # a band no library has
    bad = tmp / "bad-band.csv"
    bad.write_text("band,T_ref,T_obs,T_obs_err\n0.5-10,3.0,2.9,0.1\n0.3-2,3.0,2.9,0.1\n")
    with pytest.raises(
        InputError, match=r"line 3 \(row 2\): no gaussian library for the band 0.3-2"
    ):
        infer([made["gauss"], hard], bad, evidence=False, steps=200)


# --------------------------------------------------------------------------- command line
def test_infer_command_json(made, capsys):
    args = ["infer", str(made["gauss"]), str(made["tilt"]), str(made["by_gauss"]), "--json"]
    assert main([*args, "--steps", "1500", "--live-points", "200", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    ranking = out["ranking"]
    assert [r["family"] for r in ranking] == ["gaussian", "tilt"]
    assert ranking[0]["library"] == str(made["gauss"])
    assert set(out["parameters"]) == {"mu", "sigma", "amp"}
    for entry in out["parameters"].values():
        assert entry["ci95"][0] <= entry["ci68"][0] <= entry["median"] <= entry["ci68"][1]
        assert entry["ci68"][1] <= entry["ci95"][1]
    assert len(out["predictive"]) == 30
    assert out["baseline"]["family"] == "none"
    assert out["models"][1]["family"] == "tilt"


def test_infer_command_text_and_errors(made, capsys):
    assert main(["infer", str(made["tilt"]), str(made["by_tilt"]), "--no-evidence"]) == 0
    out = capsys.readouterr().out
    assert "tilt (tilt.h5):" in out and "95 % interval" in out and "chi2 =" in out
    assert main(["infer", str(made["by_tilt"]), str(made["tilt"])]) == 2
    assert "the observations CSV comes last" in capsys.readouterr().err
    assert main(["infer", str(made["by_tilt"])]) == 2
    assert "give one or more libraries" in capsys.readouterr().err
    assert main(["infer", str(made["tilt"]), str(made["by_tilt"]), "--fix", "index"]) == 2
    assert "--fix 'index': expected AXIS=VALUE" in capsys.readouterr().err
    assert main(["infer", str(made["tilt"]), str(made["by_tilt"]), "--steps", "10"]) == 2
    assert "--steps must be at least 100" in capsys.readouterr().err


def test_an_axis_t1_does_not_depend_on_is_held_fixed(made, tmp_path, caplog):
    """tilt's pivot rescales the ARF by a constant (the free norm absorbs it): not sampled."""
    lib = build(tmp_path, "pivots", family="tilt",
                axes="index = [-0.2, -0.1, 0.0, 0.1]\npivot = [1.0, 3.0, 6.0]\n")  # fmt: skip
    em = Emulator.from_library(lib, accuracy=False)
    assert em.inert == ("pivot",)
    with caplog.at_level("INFO"):
        result = infer([lib], made["by_tilt"], evidence=False, steps=400)
    assert "T1 does not depend on pivot" in caplog.text
    assert result.best.names == ["index"]
    assert result.best.as_dict()["fixed"] == {"pivot": 3.0}
    assert "held fixed: pivot = 3" in result.format()
    # a user's own choice wins
    chosen = infer([lib], made["by_tilt"], evidence=False, steps=400, fixed={"pivot": 1.0})
    assert chosen.best.likelihood.fixed == {"pivot": 1.0}


def test_a_poisson_library_is_used_with_a_warning(made, tmp_path, caplog):
    lib = build(tmp_path, "noisy", family="tilt", axes=TILT_AXES, noise="poisson")
    with caplog.at_level("WARNING"):
        result = infer([lib], made["by_tilt"], evidence=False, steps=200)
    assert "has Poisson noise: its scatter is the emulator's error" in caplog.text
    assert 'noise = "asimov"' in caplog.text
    assert result.best.family == "tilt"


def test_a_bad_plot_name_is_refused_before_sampling(made, capsys, monkeypatch):
    import xrmod.analysis.inference as inference

    def never(*args, **kwargs):
        raise AssertionError("sampled before checking --plot")

    monkeypatch.setattr(inference, "infer", never)
    code = main(["infer", str(made["tilt"]), str(made["by_tilt"]), "--plot", "post.jpg"])
    assert code == 2
    assert "post.jpg: suffix '.jpg'; the inference plot is written as" in capsys.readouterr().err
