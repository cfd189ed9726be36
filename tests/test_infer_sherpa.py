"""Inference on observations simulated and fitted by Sherpa, through a response xrmod never ships.

What a user does: a response of their own (here a synthetic ACIS-like one,
written to disk: its own energy grid, resolution and effective area with an
edge), a library built on it by xrmod, and observations made by another
fitter — Sherpa folds XSPEC's tbabs*zbremss through the *distorted* ARF
itself, draws Poisson counts with its own generator at several exposures,
fits them with the *nominal* ARF (its LevMar and ``conf``, as shipped) —
with noise on the reference temperatures too. ``xrmod infer`` must bring
the distortion back: the truth inside the 95 % intervals.

Skipped (visibly) when Sherpa with XSPEC models is not importable, unless
``XRMOD_REQUIRE_SHERPA=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import numpy as np
import pytest
from library_helpers import build, config_text, write_csv
from sherpa_helpers import SherpaPeer, job_from_text, sherpa_xspec_or_skip

pytest.importorskip("emcee")

from xrmod.analysis.inference import infer
from xrmod.responses.writing import write_arf, write_rmf

_xspec = sherpa_xspec_or_skip()

TRUTH = {"mu": 1.65, "sigma": 0.45, "amp": 0.12}
TEMPS = [1.7, 2.1, 2.6, 3.2, 3.9, 4.8, 5.9, 7.2]
EXPOSURES = (40000.0, 120000.0, 300000.0)
AXES = """\
mu = [0.8, 1.4, 2.0, 2.6, 3.2, 3.8, 4.4]
sigma = [0.3, 0.6, 1.0]
amp = [-0.2, -0.1, 0.0, 0.1, 0.2]
"""


def write_response(tmp):
    """An ACIS-like response: 0.2-12 keV, Gaussian resolution ~100 eV FWHM at 1 keV, an edge."""
    edges = np.linspace(0.2, 12.0, 1181)
    lo, hi = edges[:-1], edges[1:]
    e = 0.5 * (lo + hi)
    area = 600.0 * np.exp(-((0.45 / e) ** 3)) / (1.0 + (e / 4.5) ** 2) * np.where(e > 2.1, 0.9, 1.0)
    chan = np.linspace(0.2, 12.0, 801)
    c_lo, c_hi = chan[:-1], chan[1:]
    sigma = 0.04 * np.sqrt(e)[:, None]
    matrix = np.diff(0.5 * (1 + _erf((chan[None, :] - e[:, None]) / (np.sqrt(2) * sigma))), axis=1)
    matrix[matrix < 1e-6] = 0.0
    matrix *= 0.97 / matrix.sum(axis=1, keepdims=True)
    arf, rmf = tmp / "acisish.arf", tmp / "acisish.rmf"
    write_arf(arf, lo, hi, area, telescope="TEST", instrument="ACISISH")
    write_rmf(rmf, lo, hi, matrix, c_lo, c_hi, telescope="TEST", instrument="ACISISH")
    return arf, rmf


def _erf(x):
    from scipy.special import erf

    return erf(x)


def sherpa_observations(arf, rmf, tmp):
    """Rows of T_ref (noisy, 1.5 %), T_obs and its conf bounds, made and fitted by Sherpa."""
    rng = np.random.default_rng(2024)
    rows = []
    theta = "\n".join(f"{k} = {v}" for k, v in TRUTH.items())
    for exposure in EXPOSURES:
        text = config_text(tmp / "unused.h5", axes=theta, temperatures=str(TEMPS),
                           noise="poisson", exposure=exposure, response=(arf, rmf))  # fmt: skip
        peer = SherpaPeer(job_from_text(text), precise=False)
        distorted = peer.theta_arf(0)
        for t in TEMPS:
            mu = peer.expected_counts(distorted, t)
            counts = np.where(peer.band, rng.poisson(mu), 0).astype(float)
            lo, fit, hi = peer.fit(counts, peer.arf, start_kt=3.0).bounds
            if not (np.isfinite(lo) and np.isfinite(hi)):
                continue
            err = 0.015 * t
            rows.append(
                {"name": f"{exposure:g}s-{t}", "T_ref": t + err * rng.standard_normal(),
                 "T_ref_err": err, "T_obs": fit, "T_obs_lo": lo, "T_obs_hi": hi}
            )  # fmt: skip
    return rows


@pytest.fixture(scope="module", autouse=True)
def _restore_xspec_tables():
    """SherpaPeer sets XSPEC's global tables; put back what was there."""
    abund, xsect = _xspec.get_xsabund(), _xspec.get_xsxsect()
    yield
    from xrmod.models import silence_c_output

    with silence_c_output():
        _xspec.set_xsabund(abund)
        _xspec.set_xsxsect(xsect)


def test_sherpa_made_observations_on_a_new_response(tmp_path):
    arf, rmf = write_response(tmp_path)
    library = build(
        tmp_path,
        "acisish",
        axes=AXES,
        temperatures='{ start = 1.5, stop = 8.0, num = 7, spacing = "log" }',
        response=(arf, rmf),
    )
    rows = sherpa_observations(arf, rmf, tmp_path)
    assert len(rows) >= 20
    csv = write_csv(tmp_path / "sherpa.csv", rows)
    result = infer([library], csv, steps=2000, evidence=False, seed=4)
    summary = result.best.summary()
    for name, truth in TRUTH.items():
        lo, hi = summary[name]["ci95"]
        assert lo <= truth <= hi, (name, truth, summary[name])
    assert summary["amp"]["ci95"][0] > 0  # a bump, not a dip, and not nothing
    gof = result.best.goodness_of_fit()
    assert gof["p_value"] > 0.01, gof
