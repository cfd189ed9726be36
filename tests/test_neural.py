"""The neural emulator: held-out accuracy against the spline's, determinism, saving, gradients.

Trained on a small Asimov library made by the native engine. Skipped
(visibly) where PyTorch is not installed, unless ``XRMOD_REQUIRE_TORCH=1``
(CI), where that is a failure. The tests that need no PyTorch (importing the
module, the message without it) always run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from library_helpers import build

from xrmod.analysis.emulator import Emulator
from xrmod.analysis.spline import SplineEmulator, interior_slices
from xrmod.analysis.training import read_training_set
from xrmod.errors import InputError

#: Set to 1 (CI does) to make a missing PyTorch a test failure instead of a skip.
REQUIRE_ENV = "XRMOD_REQUIRE_TORCH"

#: Few epochs: the test library is small and the tests must stay fast.
FAST = {"max_epochs": 1500, "seed": 3}

QUERY = {
    "kT_true": [1.7, 2.6, 4.4, 8.1],
    "mu": [1.1, 2.45, 3.9, 4.8],
    "sigma": [0.35, 0.8, 0.55, 0.95],
    "amp": [-0.17, 0.05, 0.12, -0.03],
}


@pytest.fixture(scope="session")
def torch():
    """PyTorch, or a visible skip (a failure with XRMOD_REQUIRE_TORCH=1)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        try:
            import torch
        except ImportError as e:
            pytest.fail(
                f'{REQUIRE_ENV}=1 but PyTorch is not importable ({e}): pip install "xrmod[nn]"',
                pytrace=False,
            )
        return torch
    return pytest.importorskip(
        "torch",
        reason=f'PyTorch is not installed (pip install "xrmod[nn]"); '
        f"set {REQUIRE_ENV}=1 to make this a failure",
    )


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Asimov gaussian library: 7 mu x 3 sigma x 5 amp x 7 kT (735 nodes)."""
    return build(tmp_path_factory.mktemp("neural"), "lib")


@pytest.fixture(scope="module")
def training(lib):
    return read_training_set(lib)


@pytest.fixture(scope="module")
def compared(torch, training):
    from xrmod.analysis.neural import compare_with_spline

    return compare_with_spline(training, **FAST)


@pytest.fixture(scope="module")
def emulator(compared):
    return compared["emulator"]


def _copy(lib, path):
    path.write_bytes(lib.read_bytes())
    return path


# --------------------------------------------------------------------------- without torch
def test_importing_the_module_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        import xrmod.analysis.neural
        import xrmod.analysis.emulator
        assert sys.modules.get("torch") is None, "torch imported"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_without_torch_building_one_says_how_to_install_it(monkeypatch, lib, training):
    from xrmod.analysis.neural import NeuralEmulator

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(InputError, match=r'needs PyTorch: pip install "xrmod\[nn\]"'):
        NeuralEmulator(training)
    with pytest.raises(InputError, match=r'pip install "xrmod\[nn\]"'):
        Emulator.from_library(lib, kind="mlp")


# --------------------------------------------------------------------------- accuracy
def test_held_out_error_beside_the_splines_on_the_same_nodes(compared, training, emulator):
    mlp, spline = compared["mlp"], compared["spline"]
    assert mlp.method == "held-out slices"
    assert spline.method == "leave-one-slice-out"
    assert mlp.nodes == spline.nodes  # the very same nodes
    assert mlp.nodes["T1"] > 0
    assert mlp.per_axis.keys() == spline.per_axis.keys()
    for acc in (mlp, spline):
        for fit in ("T1", "T1_modified"):
            assert np.isfinite(acc.rms[fit]) and np.isfinite(acc.max[fit])
    assert mlp.rms["T1"] < 3.0  # in units of the library's statistical width
    assert mlp.max["T1"] < 10.0
    # the held-out slices are leave-one-slice-out's, at most 20 % of the nodes, never trained on
    assert set(emulator.held_out) <= set(interior_slices(training))
    assert 0 < compared["nodes"] <= 0.2 * np.prod(training.shape)
    info = emulator.training_info
    assert info["nodes_held_out"] == compared["nodes"]
    assert info["nodes_train"] + info["nodes_validation"] + compared["nodes"] == np.prod(
        training.shape
    )
    # the emulator's own error is that held-out RMS; both are reported
    assert emulator.accuracy is mlp and emulator.spline_accuracy is spline
    assert emulator.error_scale("T1") == mlp.rms["T1"]
    text = emulator.describe()
    assert "held-out slices" in text and "the spline on the same nodes" in text
    summary = json.loads(json.dumps(emulator.summary()))
    assert summary["kind"] == "mlp"
    assert summary["spline_accuracy"]["rms"]["T1"] == spline.rms["T1"]


def test_close_to_the_library_at_its_nodes(emulator, training):
    mesh = np.meshgrid(*[a.nodes for a in training.axes], indexing="ij")
    p = emulator.predict(**{a.name: m for a, m in zip(training.axes, mesh, strict=True)})
    pull = (p.T1 - training.value("T1")) / training.width("T1")
    assert np.sqrt(np.nanmean(pull**2)) < 1.0
    # T1' of Asimov data is the true temperature
    np.testing.assert_allclose(p.T1_modified, mesh[-1], rtol=1e-3)
    np.testing.assert_allclose(p.T1_sigma, training.width("T1"), rtol=0.1)


def test_explicit_slices_and_bad_options(torch, training):
    from xrmod.analysis.neural import NeuralEmulator

    em = NeuralEmulator(training, max_epochs=30, slices=[("amp", 2), ("kT_true", 3)])
    assert em.held_out == [(2, 2), (3, 3)]
    assert em.spline_accuracy.nodes == em.accuracy.nodes
    assert set(em.accuracy.per_axis) == {"amp", "kT_true"}
    with pytest.raises(InputError, match="unknown option learning_rat "):
        NeuralEmulator(training, learning_rat=0.1)
    with pytest.raises(InputError, match="no axis 'tau' to hold out"):
        NeuralEmulator(training, slices=[("tau", 1)])
    with pytest.raises(InputError, match=r"amp: index 4 is not an interior slice \(1 .. 3\)"):
        NeuralEmulator(training, slices=[("amp", 4)])


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_network_and_torch_state_restored(torch, training):
    from xrmod.analysis.neural import NeuralEmulator

    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    a = NeuralEmulator(training, seed=5, max_epochs=150, compare=False)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    b = NeuralEmulator(training, seed=5, max_epochs=150, compare=False)
    c = NeuralEmulator(training, seed=6, max_epochs=150, compare=False)
    pa, pb, pc = (em.predict(**QUERY) for em in (a, b, c))
    np.testing.assert_array_equal(pa.T1, pb.T1)
    np.testing.assert_array_equal(pa.T1_modified_sigma, pb.T1_modified_sigma)
    assert a.accuracy == b.accuracy
    assert not np.array_equal(pa.T1, pc.T1)


# --------------------------------------------------------------------------- gradients
def test_gradient_against_central_differences(emulator):
    rng = np.random.default_rng(2)
    n = 20
    q = {
        "kT_true": np.exp(rng.uniform(np.log(1.6), np.log(8.5), n)),
        "mu": rng.uniform(0.9, 4.9, n),
        "sigma": rng.uniform(0.32, 0.98, n),
        "amp": rng.uniform(-0.19, 0.19, n),
    }
    # steps well above float32 rounding of the outputs (the network is evaluated in float32)
    steps = {"kT_true": 1e-3 * q["kT_true"], "mu": 1e-3, "sigma": 1e-3, "amp": 1e-3}
    for fit in ("T1", "T1_modified"):
        g = emulator.gradient(fit=fit, **q)
        for name, h in steps.items():
            up, down = dict(q), dict(q)
            up[name] = q[name] + h
            down[name] = q[name] - h
            fd = (getattr(emulator.predict(**up), fit) - getattr(emulator.predict(**down), fit)) / (
                2 * h
            )
            np.testing.assert_allclose(g[name], fd, rtol=2e-3, atol=2e-4, err_msg=f"{fit} {name}")
    # what inference uses (Emulator.bind) agrees with predict and gradient (to float32's
    # rounding: a float32 matrix product may round a row differently in a batch of another size)
    kT = [2.0, 5.5]
    theta = np.array([[2.1, 0.6, 0.1], [3.7, 0.4, -0.15]])
    bound = emulator.bind(kT)(theta)
    for i, (mu, sigma, amp) in enumerate(theta):
        p = emulator.predict(kT_true=kT, mu=mu, sigma=sigma, amp=amp)
        np.testing.assert_allclose(bound.value[i], p.T1, rtol=1e-6)
        np.testing.assert_allclose(bound.error[i], p.T1_error, rtol=1e-6)
        slope = emulator.gradient(kT_true=kT, mu=mu, sigma=sigma, amp=amp)["kT_true"]
        np.testing.assert_allclose(bound.slope[i], slope, rtol=1e-6)


def test_vectorised(emulator):
    n = 100_000
    rng = np.random.default_rng(0)
    q = {name: rng.uniform(lo, hi, n) for name, (lo, hi) in emulator.bounds.items()}
    p = emulator.predict(**q)
    assert p.T1.shape == (n,) and np.isfinite(p.T1).all()
    one = emulator.predict(**{k: v[123] for k, v in q.items()})
    assert one.T1 == pytest.approx(p.T1[123], rel=1e-6)


# --------------------------------------------------------------------------- saving
def test_save_load_bit_identical_and_stale_refusal(tmp_path, lib, emulator):
    beside = tmp_path / "mlp.h5"
    emulator.save(beside)
    with h5py.File(beside, "r") as f:
        group = f["EMULATORS/mlp"]
        assert group["layers/0/weight"].dtype.kind == "f"  # weights as datasets, no pickle
        assert json.loads(group.attrs["architecture"])["activation"] == "tanh"
    loaded = Emulator.load(beside, kind="mlp", library=lib)
    assert type(loaded) is type(emulator)
    a, b = emulator.predict(**QUERY), loaded.predict(**QUERY)
    for field in ("T1", "T1_sigma", "T1_error", "T1_valid", "T1_modified", "T1_modified_sigma"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    ga, gb = emulator.gradient(**QUERY), loaded.gradient(**QUERY)
    for name in ga:
        np.testing.assert_array_equal(ga[name], gb[name])
    assert loaded.accuracy == emulator.accuracy
    assert loaded.spline_accuracy == emulator.spline_accuracy
    assert loaded.held_out == emulator.held_out
    assert loaded.describe() == emulator.describe()
    # the library's data change (a resume, a rerun): the saved network is refused
    changed = _copy(lib, tmp_path / "changed.h5")
    with h5py.File(changed, "r+") as f:
        f["LIBRARY/results"][3, 1, 2, 4, 1] *= 1.001
    with pytest.raises(InputError, match="stale"):
        Emulator.load(beside, kind="mlp", library=changed)


def test_saved_into_the_library_predicts_without_torch(torch, tmp_path, lib):
    copy = _copy(lib, tmp_path / "copy.h5")
    em = Emulator.from_library(copy, kind="mlp", max_epochs=40, accuracy=False)
    assert em.error_scale("T1") == 0.0  # nothing held out: no measured error
    assert em.save() == str(copy)
    expected = em.predict(**QUERY).T1
    np.save(tmp_path / "expected.npy", expected)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # no PyTorch in this process
        import numpy as np
        from xrmod.analysis.emulator import Emulator
        em = Emulator.load({str(copy)!r}, kind="mlp")
        p = em.predict(**{QUERY!r})
        assert np.array_equal(p.T1, np.load({str(tmp_path / "expected.npy")!r}))
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    with h5py.File(copy, "r+") as f:
        f["LIBRARY/status"][0, 0, 0, 0] = -3
    with pytest.raises(InputError, match="stale"):
        Emulator.load(copy, kind="mlp")


# --------------------------------------------------------------------------- masking
def test_masked_next_to_failed_nodes_like_the_spline(torch, tmp_path, lib):
    copy = _copy(lib, tmp_path / "failed.h5")
    with h5py.File(copy, "r+") as f:  # one failed fit: no value, status -3
        f["LIBRARY/results"][2, 1, 3, 4, :] = np.nan
        f["LIBRARY/status"][2, 1, 3, 4] = -3
    nn = Emulator.from_library(copy, kind="mlp", max_epochs=40, accuracy=False)
    spline = Emulator.from_library(copy, accuracy=False)
    assert isinstance(spline, SplineEmulator)
    rng = np.random.default_rng(4)
    q = {name: rng.uniform(lo, hi, 4000) for name, (lo, hi) in nn.bounds.items()}
    a, b = nn.predict(**q), spline.predict(**q)
    np.testing.assert_array_equal(a.T1_valid, b.T1_valid)
    np.testing.assert_array_equal(a.T1_modified_valid, b.T1_modified_valid)
    assert 0 < (~a.T1_valid).sum() < a.T1_valid.size
    assert np.isnan(a.T1[~a.T1_valid]).all() and np.isfinite(a.T1[a.T1_valid]).all()
