"""The spline emulator: through the nodes, honest between them, masked failures, saving.

Checked against independent computations: the library's own numbers at the
nodes, direct engine runs at points off the grid, exact polynomials, SciPy's
``RegularGridInterpolator`` for the leave-one-out refits, finite differences
for the gradients.
"""

import logging

import h5py
import numpy as np
import pytest
from library_helpers import build, fitted

from xrmod.analysis.emulator import Emulator, load_emulator
from xrmod.analysis.spline import SplineEmulator
from xrmod.analysis.training import library_digest, read_training_set
from xrmod.cli import main
from xrmod.errors import InputError


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Asimov gaussian library: 7 mu x 3 sigma x 5 amp x 7 kT."""
    return build(tmp_path_factory.mktemp("emulator"), "lib")


@pytest.fixture(scope="module")
def emulator(lib):
    return Emulator.from_library(lib)


def _grid_points(lib):
    with h5py.File(lib, "r") as f:
        axes = [f[f"PARAMS/{a}"][()] for a in ("mu", "sigma", "amp")]
        temps = f["LIBRARY/temps"][()]
    mesh = np.meshgrid(*axes, temps, indexing="ij")
    return dict(zip(("mu", "sigma", "amp", "kT_true"), mesh, strict=True))


# --------------------------------------------------------------------------- the nodes
def test_passes_through_every_node(lib, emulator):
    data = fitted(lib)
    p = emulator.predict(**_grid_points(lib))
    np.testing.assert_allclose(p.T1, data["T1"], rtol=1e-11)
    np.testing.assert_allclose(p.T1_modified, data["T1_modified"], rtol=1e-11)
    lo, fit, hi = data["lo"], data["T1"], data["hi"]
    # error_delta = 1; a bound at a jump (-6) is NaN: its other half-width stands in
    width = np.where(np.isnan(lo), hi - fit, np.where(np.isnan(hi), fit - lo, (hi - lo) / 2))
    assert np.isnan(lo + hi).sum() == (data["status"] == -6).sum() > 0
    np.testing.assert_allclose(p.T1_sigma, width, rtol=1e-11)
    assert p.T1_valid.all() and p.T1_modified_valid.all()


def test_axes_fixed_and_scales(emulator):
    assert emulator.parameters == ("mu", "sigma", "amp")
    assert [a.scale for a in emulator.axes] == ["linear", "linear", "linear", "log"]
    assert emulator.bounds["mu"] == (0.8, 5.0)
    assert emulator.bounds["kT_true"] == pytest.approx((1.5, 9.0))
    assert emulator.fixed == {}


def test_one_value_axis_is_fixed_and_geometric_axis_is_log(tmp_path):
    lib = build(
        tmp_path,
        "tilt",
        family="tilt",
        axes="index = [-0.2, -0.1, 0.0, 0.1]\npivot = 2.0\n",
        temperatures="[1.0, 2.0, 4.0, 8.0]",
    )
    em = Emulator.from_library(lib, accuracy=False)
    assert em.parameters == ("index",)
    assert em.fixed == {"pivot": 2.0}
    assert em.axes[-1].scale == "log"
    p = em.predict(kT_true=3.0, index=0.05, pivot=2.0)
    assert np.isfinite(p.T1)
    with pytest.raises(InputError, match=r"pivot has one value in the library \(2\)"):
        em.predict(kT_true=3.0, index=0.05, pivot=1.0)


# --------------------------------------------------------------------------- between the nodes
OFF_GRID = [
    {"mu": 1.83, "sigma": 0.47, "amp": -0.13},
    {"mu": 3.21, "sigma": 0.81, "amp": 0.07},
    {"mu": 4.55, "sigma": 0.36, "amp": -0.17},
]


@pytest.mark.parametrize("theta", OFF_GRID)
def test_between_nodes_within_its_own_error_of_a_direct_run(tmp_path, emulator, theta):
    """The engine run at θ off the grid (and kT between nodes) lands within 3 stated errors."""
    temps = [1.7, 2.4, 3.3, 5.1, 7.7]
    axes = "\n".join(f"{k} = {v}" for k, v in theta.items())
    direct = fitted(build(tmp_path, "direct", axes=axes, temperatures=str(temps)))
    truth = direct["T1"].reshape(-1)
    p = emulator.predict(kT_true=temps, **theta)
    assert p.T1_valid.all()
    pull = (p.T1 - truth) / p.T1_error
    assert np.abs(pull).max() < 3.0, pull
    # and it is an interpolation worth having: within the library's own 1-sigma width
    assert (np.abs(p.T1 - truth) < p.T1_sigma).all()
    # T1' (the fit with the modified ARF) of Asimov data is the truth: so is the emulator's
    np.testing.assert_allclose(p.T1_modified, temps, rtol=1e-6)


def test_exact_for_polynomials(tmp_path):
    """log(T1/kT) a polynomial of degree <= 3 per axis (2 on a 3-node axis): reproduced exactly."""
    lib = build(tmp_path, "poly")
    pts = _grid_points(lib)

    def poly(mu, sigma, amp, kT):
        x = np.log(kT)
        return 0.01 * (mu**3 - 2 * mu * sigma**2 + amp * x**3 - 0.5 * sigma * x + amp**3 * mu)

    with h5py.File(lib, "r+") as f:
        r = f["LIBRARY/results"][()]
        r[..., 1] = pts["kT_true"] * np.exp(
            poly(pts["mu"], pts["sigma"], pts["amp"], pts["kT_true"])
        )
        r[..., 0], r[..., 2] = 0.98 * r[..., 1], 1.02 * r[..., 1]
        f["LIBRARY/results"][...] = r
    em = Emulator.from_library(lib)
    rng = np.random.default_rng(1)
    q = {
        "mu": rng.uniform(0.8, 5.0, 200),
        "sigma": rng.uniform(0.3, 1.0, 200),
        "amp": rng.uniform(-0.2, 0.2, 200),
        "kT_true": np.exp(rng.uniform(np.log(1.5), np.log(9.0), 200)),
    }
    truth = q["kT_true"] * np.exp(poly(q["mu"], q["sigma"], q["amp"], q["kT_true"]))
    np.testing.assert_allclose(em.predict(**q).T1, truth, rtol=1e-10)
    # left out, a slice of a 5+ node axis leaves 4+: still exact; of the 3-node sigma
    # axis it leaves 2, a line, and sigma**2 shows
    for name in ("mu", "amp", "kT_true"):
        assert em.accuracy.per_axis[name] < 1e-8, name
    assert em.accuracy.per_axis["sigma"] > 1e-3


# --------------------------------------------------------------------------- leave one out
def test_leave_one_slice_out_matches_scipy(tmp_path):
    """The accuracy's numbers, recomputed with SciPy's cubic RegularGridInterpolator."""
    from scipy.interpolate import RegularGridInterpolator

    axes = "mu = [1.0, 2.0, 3.0, 4.0, 5.0]\nsigma = [0.3, 0.5, 0.7, 0.9, 1.1]\namp = 0.1\n"
    lib = build(tmp_path, "loo", axes=axes, temperatures="{ start = 1, stop = 9, num = 5 }")
    em = Emulator.from_library(lib)
    training = read_training_set(lib)
    values, width = training.value("T1"), training.width("T1")
    coords = [a.coordinates for a in training.axes]
    errors = {}
    for j, axis in enumerate(training.axes):
        for k in range(1, axis.nodes.size - 1):
            keep = np.delete(np.arange(axis.nodes.size), k)
            reduced = [c if i != j else c[keep] for i, c in enumerate(coords)]
            rgi = RegularGridInterpolator(
                reduced, np.take(training.targets["T1"], keep, axis=j), method="cubic"
            )
            pts = np.stack(
                np.meshgrid(
                    *[c if i != j else c[k : k + 1] for i, c in enumerate(coords)], indexing="ij"
                ),
                axis=-1,
            ).reshape(-1, len(coords))
            kT = np.exp(pts[:, -1])
            predicted = kT * np.exp(rgi(pts))
            actual = np.take(values, k, axis=j).reshape(-1)
            sigma = np.take(width, k, axis=j).reshape(-1)
            errors.setdefault(axis.name, []).append((predicted - actual) / sigma)
    pooled = np.concatenate([np.concatenate(e) for e in errors.values()])
    # SciPy solves its spline system iteratively (to ~1e-6): agreement to 1e-4
    assert em.accuracy.rms["T1"] == pytest.approx(np.sqrt(np.mean(pooled**2)), rel=1e-4)
    assert em.accuracy.max["T1"] == pytest.approx(np.abs(pooled).max(), rel=1e-4)
    for name, e in errors.items():
        e = np.concatenate(e)
        assert em.accuracy.per_axis[name] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-4)
    assert em.accuracy.nodes["T1"] == pooled.size
    assert em.error_scale("T1") == em.accuracy.rms["T1"]


# --------------------------------------------------------------------------- refusals
def test_outside_the_grid_is_refused_naming_the_axis(emulator):
    with pytest.raises(InputError, match=r"mu = 5.5 keV is outside the library's grid \[0.8, 5\]"):
        emulator.predict(kT_true=3.0, mu=5.5, sigma=0.5, amp=0.0)
    with pytest.raises(InputError, match=r"kT_true = 12 keV is outside"):
        emulator.predict(kT_true=[3.0, 12.0], mu=2.0, sigma=0.5, amp=0.0)
    with pytest.raises(InputError, match=r"amp = nan is outside"):
        emulator.predict(kT_true=3.0, mu=2.0, sigma=0.5, amp=np.nan)


def test_unknown_or_missing_axis(emulator):
    with pytest.raises(InputError, match=r"unknown axis 'nu': the emulator's axes are mu, sigma"):
        emulator.predict(kT_true=3.0, mu=2.0, sigma=0.5, amp=0.0, nu=1.0)
    with pytest.raises(InputError, match=r"no value for amp"):
        emulator.predict(kT_true=3.0, mu=2.0, sigma=0.5)
    with pytest.raises(InputError, match=r"unknown fit"):
        emulator.predict(kT_true=3.0, mu=2.0, sigma=0.5, amp=0.0, fits=("T2",))


def test_broadcasting(emulator):
    p = emulator.predict(kT_true=[[2.0], [3.0]], mu=[1.0, 2.0, 3.0], sigma=0.5, amp=-0.1)
    assert p.T1.shape == (2, 3)
    single = emulator.predict(kT_true=3.0, mu=2.0, sigma=0.5, amp=-0.1)
    assert p.T1[1, 1] == single.T1
    assert p.theta["mu"].shape == (2, 3)


# --------------------------------------------------------------------------- failures
def test_failed_nodes_are_masked_with_a_warning(tmp_path, caplog):
    """amp = -1.5 makes the ARF negative (status -1): cells touching it give NaN, invalid."""
    axes = "mu = [1.0, 2.0, 4.0, 6.0]\nsigma = [0.2, 1.0]\namp = [-1.5, -0.2, 0.0, 0.2]\n"
    lib = build(tmp_path, "failed", axes=axes, temperatures="[1.0, 2.0, 4.0, 8.0]")
    data = fitted(lib)
    assert (data["status"] == -1).any()
    with caplog.at_level(logging.WARNING):
        em = Emulator.from_library(lib)
    assert "have no T1 (status counts -1:" in caplog.text
    assert "NaN (valid=False)" in caplog.text
    bad = np.argwhere(data["status"] == -1)[0]  # (mu, sigma, amp, kT) of a failed node
    mu = [1.0, 2.0, 4.0, 6.0][bad[0]]
    sigma = [0.2, 1.0][bad[1]]
    near = em.predict(kT_true=3.0, mu=mu, sigma=sigma, amp=-1.0)
    assert not near.T1_valid and np.isnan(near.T1) and np.isnan(near.T1_sigma)
    far = em.predict(kT_true=3.0, mu=mu, sigma=sigma, amp=0.1)
    assert far.T1_valid and np.isfinite(far.T1)
    grad = em.gradient(kT_true=3.0, mu=mu, sigma=sigma, amp=-1.0)
    assert all(np.isnan(v) for v in grad.values())


def test_realizations_are_averaged(tmp_path):
    axes = "mu = [1.0, 3.0]\nsigma = 0.5\namp = [-0.2, 0.2]\n"
    lib = build(
        tmp_path, "real", axes=axes, noise="poisson", realizations=3, temperatures="[2.0, 4.0, 6.0]"
    )
    data = fitted(lib)
    em = Emulator.from_library(lib, accuracy=False)
    p = em.predict(kT_true=np.array([2.0, 4.0, 6.0]), mu=1.0, amp=0.2)
    log_ratio = np.log(data["T1"][0, 0, 1] / np.array([2.0, 4.0, 6.0]))  # (R, NT)
    np.testing.assert_allclose(p.T1, [2.0, 4.0, 6.0] * np.exp(log_ratio.mean(axis=0)), rtol=1e-12)


# --------------------------------------------------------------------------- gradients
def test_gradient_against_finite_differences(emulator):
    theta = {"mu": 2.47, "sigma": 0.52, "amp": -0.11}
    kT = 3.7
    grad = emulator.gradient(kT_true=kT, **theta)
    steps = {"mu": 1e-5, "sigma": 1e-6, "amp": 1e-6, "kT_true": 1e-5}
    point = {**theta, "kT_true": kT}
    for name, h in steps.items():
        up = emulator.predict(**{**point, name: point[name] + h}, fits="T1").T1
        down = emulator.predict(**{**point, name: point[name] - h}, fits="T1").T1
        fd = (up - down) / (2 * h)
        assert grad[name] == pytest.approx(fd, rel=1e-5, abs=1e-9), name
    assert abs(grad["amp"]) > 0.1  # the bump matters: a test that can fail


def test_bind_matches_predict_and_gradient(emulator):
    rng = np.random.default_rng(3)
    theta = np.column_stack(
        [rng.uniform(0.8, 5.0, 40), rng.uniform(0.3, 1.0, 40), rng.uniform(-0.2, 0.2, 40)]
    )
    kT = np.array([1.6, 2.5, 4.4, 8.8])
    fast = emulator.bind(kT)(theta)
    generic = Emulator.bind(emulator, kT)(theta)  # the base class: no kT contraction
    p = emulator.predict(kT_true=kT, mu=theta[:, :1], sigma=theta[:, 1:2], amp=theta[:, 2:])
    g = emulator.gradient(kT_true=kT, mu=theta[:, :1], sigma=theta[:, 1:2], amp=theta[:, 2:])
    for b in (fast, generic):
        np.testing.assert_allclose(b.value, p.T1, rtol=1e-12)
        np.testing.assert_allclose(b.sigma, p.T1_sigma, rtol=1e-12)
        np.testing.assert_allclose(b.error, p.T1_error, rtol=1e-12)
        np.testing.assert_allclose(b.slope, g["kT_true"], rtol=1e-10)
    with pytest.raises(InputError, match=r"kT_true = 0.5 keV is outside"):
        emulator.bind([0.5, 2.0])


# --------------------------------------------------------------------------- saving
def test_save_into_the_library_and_load(tmp_path, lib):
    copy = tmp_path / "copy.h5"
    copy.write_bytes(lib.read_bytes())
    em = Emulator.from_library(copy)
    with h5py.File(copy, "r") as f:
        before = library_digest(f)
    assert em.save() == str(copy)
    with h5py.File(copy, "r") as f:
        assert "EMULATORS/spline" in f
        assert library_digest(f) == before  # saving does not touch the data
    loaded = Emulator.load(copy)
    assert isinstance(loaded, SplineEmulator)
    q = {"kT_true": [1.9, 6.1], "mu": 2.1, "sigma": 0.77, "amp": 0.13}
    a, b = em.predict(**q), loaded.predict(**q)
    for field in ("T1", "T1_sigma", "T1_error", "T1_modified"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert loaded.accuracy == em.accuracy
    assert load_emulator(copy).library_digest == before


def test_save_beside_and_stale_refusal(tmp_path, lib):
    copy = tmp_path / "lib.h5"
    copy.write_bytes(lib.read_bytes())
    em = Emulator.from_library(copy, accuracy=False)
    beside = tmp_path / "lib.emulator.h5"
    em.save(beside)
    assert Emulator.load(beside).predict(kT_true=2.0, mu=1.0, sigma=0.3, amp=0.0).T1_valid
    em.save()
    with h5py.File(copy, "r+") as f:  # the library changes (a resume, a rerun)
        f["LIBRARY/results"][0, 0, 0, 0, 1] += 0.01
    for source in (copy, beside):
        with pytest.raises(InputError, match=r"the emulator is stale: it was built from data"):
            Emulator.load(source)
    # xrmod infer's loader ignores the stale one, with a warning, and builds a new one
    fresh = load_emulator(copy)
    with h5py.File(copy, "r") as f:
        assert fresh.library_digest == library_digest(f)


def test_load_errors(tmp_path, lib, caplog):
    with pytest.raises(InputError, match="no saved emulator"):
        Emulator.load(lib if "EMULATORS" not in h5py.File(lib, "r") else tmp_path / "x.h5")
    beside = tmp_path / "e.h5"
    Emulator.from_library(lib, accuracy=False).save(beside)
    moved = tmp_path / "gone.h5"
    with h5py.File(beside, "r+") as f:
        f.attrs["library"] = str(moved)
        f["EMULATORS/spline"].attrs["library"] = str(moved)
    with pytest.raises(InputError, match="the library this emulator was built from is not there"):
        Emulator.load(beside)
    with caplog.at_level(logging.WARNING):
        Emulator.load(beside, verify=False)
    assert "without checking its library" in caplog.text
    Emulator.load(beside, library=lib)  # pointed at it: checked and accepted
    with pytest.raises(InputError, match=r"no saved 'mlp' emulator \(saved: spline\)"):
        Emulator.load(beside, kind="mlp", library=lib)
    with pytest.raises(InputError, match="unknown emulator kind 'gp'"):
        Emulator.from_library(lib, kind="gp")


# --------------------------------------------------------------------------- command line
def test_emulate_command(tmp_path, lib, capsys):
    copy = tmp_path / "cli.h5"
    copy.write_bytes(lib.read_bytes())
    assert main(["emulate", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "spline emulator of" in out and "leave-one-slice-out" in out
    assert f"saved to {copy}" in out
    assert main(["info", str(copy)]) == 0
    assert "emulator: spline (saved" in capsys.readouterr().out
    assert main(["emulate", str(copy), "--json", "--no-save"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["saved_to"] is None
    assert [a["name"] for a in summary["axes"]] == ["mu", "sigma", "amp", "kT_true"]
    assert summary["accuracy"]["rms"]["T1"] > 0


def test_emulate_command_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert main(["emulate", str(bad)]) == 2
    assert "cannot emulate, not a readable HDF5 file" in capsys.readouterr().err


def test_a_best_fit_at_the_model_jump_is_not_a_node(tmp_path):
    """zbremss jumps at 13.58 keV: a -6 fit sitting there is masked; other -6 fits are kept."""
    axes = "mu = [0.6, 1.1, 1.6, 2.1]\nsigma = [0.25, 0.45, 0.7, 1.0]\namp = [-0.24, 0.0]\n"
    lib = build(tmp_path, "jump", axes=axes, temperatures="[6.0, 8.0, 10.0]")
    data = fitted(lib)
    training = read_training_set(lib)
    jump = data["status"] == -6
    at_jump = jump & (np.abs(data["T1"] / 13.58 - 1) < 1e-3)
    assert at_jump.any()
    np.testing.assert_array_equal(training.usable["T1"], ~at_jump)
    assert training.status_counts["T1"][-6] == jump.sum()
