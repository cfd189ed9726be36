"""The ``xspec`` engine.

Everywhere: the engine's protocol with PyXSPEC, against a small recording
stand-in (``fake_xspec``) put in ``sys.modules["xspec"]``. The same engine on
real XSPEC: ``tests/test_real_xspec.py``.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import fake_xspec
import numpy as np
import pytest
from astropy.io import fits

from xrmod.config import parse_config
from xrmod.engines import get_engine
from xrmod.engines.base import EXTRAS
from xrmod.engines.xspec import (
    ERROR_FLAGS,
    MISSING_PYXSPEC,
    NEW_MINIMUM_RETRIES,
    XspecEngine,
    band_ignore_ranges,
    channel_ranges,
    interpret_error,
    point_seed,
)
from xrmod.errors import ConfigError, EngineError
from xrmod.job import job_from_config
from xrmod.status import Status

CONFIG = """
[library]
noise = "{noise}"
seed = 99
[instrument]
exposure = 20000.0
band = [0.5, 10.0]
{background}
[source]
model = "tbabs*zbremss"
nH = 0.05
redshift = 0.1
norm = 1.0e-3
abundance_table = "wilm"
cross_sections = "vern"
temperatures = [2.0, 5.0]
[modifier]
family = "linear"
[modifier.axes]
slope = {slopes}
pivot = [3.0]
[fit]
error_delta = {delta}
kt_limits = [0.05, 64.0]
"""

#: θ 0 makes the ARF negative above 5 keV (every point ARF_NEGATIVE).
SLOPES = "[-0.5, 0.01, 0.03]"


def make_job(noise="poisson", delta=1.0, slopes=SLOPES, background="", path=None):
    text = CONFIG.format(noise=noise, delta=delta, slopes=slopes, background=background)
    return job_from_config(parse_config(text, source="<xspec-test>", base_dir=path))


@pytest.fixture
def fake(monkeypatch):
    """A fresh fake PyXSPEC in sys.modules; yields its module (session: ``.session``)."""
    module = fake_xspec.new_module()
    monkeypatch.setitem(sys.modules, "xspec", module)
    return module


@pytest.fixture(scope="module")
def job():
    return make_job()


def run_all(engine, job, order=None):
    units = [job.grid.unit(k) for k in range(job.grid.n_units())]
    if order is not None:
        units = [units[k] for k in order]
    return {u.start: engine.run_unit(u) for u in units}


def points(results):
    units = [results[k] for k in sorted(results)]
    out = {
        name: np.concatenate([getattr(u, name) for u in units])
        for name in ("results", "results_modified", "status")
    }
    for name in EXTRAS:
        out[name] = np.concatenate([u.extras[name] for u in units])
    return out


@pytest.fixture
def prepared(fake, job):
    engine = XspecEngine()
    engine.prepare(job)
    yield engine, fake.session
    engine.close()


# --------------------------------------------------------------------------- import


def test_importing_the_module_does_not_import_pyxspec():
    code = (
        "import sys, xrmod.engines.xspec, xrmod.engines\n"
        "assert 'xspec' not in sys.modules, 'xspec imported'\n"
        "xrmod.engines.get_engine('xspec')\n"
        "assert 'xspec' not in sys.modules, 'xspec imported by get_engine'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_registered_as_xspec():
    engine = get_engine("xspec")
    assert isinstance(engine, XspecEngine) and engine.name == "xspec"


def test_missing_pyxspec_is_a_clear_engine_error(monkeypatch, job):
    monkeypatch.setitem(sys.modules, "xspec", None)  # import xspec raises ImportError
    with pytest.raises(EngineError) as info:
        XspecEngine().prepare(job)
    assert MISSING_PYXSPEC in str(info.value)
    assert 'engine = "native"' in str(info.value)


# --------------------------------------------------------------------------- session


def test_session_settings(prepared, job):
    _, session = prepared
    s = session.settings
    assert s["Xset.chatter"] == 0 and s["Xset.logChatter"] == 0
    assert s["Xset.allowPrompting"] is False
    assert s["Xset.abund"] == "wilm" and s["Xset.xsect"] == "vern"
    assert s["Fit.statMethod"] == "cstat"
    assert s["Fit.query"] == "no"
    model = session.model
    assert model.expression == "tbabs*zbremss"
    for name, value in (("nH", 0.05), ("Redshift", 0.1)):
        par = model.by_name(name)
        assert par.frozen and par.values[0] == value
    assert not model.by_name("kT").frozen and not model.by_name("norm").frozen
    assert model.by_name("kT").values[2:] == [0.05, 0.05, 64.0, 64.0]  # kt_limits, hard and soft


def test_template_spectrum_and_band(prepared, job):
    engine, session = prepared
    (template,) = session.spectra_loaded
    assert Path(template).parent == engine.scratch
    with fits.open(template) as f:
        header = f["SPECTRUM"].header
        assert header["EXPOSURE"] == 20000.0 and header["BACKSCAL"] == 1.0
        np.testing.assert_array_equal(f["SPECTRUM"].data["CHANNEL"], job.rmf.channels)
    run_all(engine, job)
    expected = np.flatnonzero(job.rmf.band_channels(0.5, 10.0)) + 1  # XSPEC counts from 1
    assert session.performs and all(p["noticed"] == expected.size for p in session.performs)
    np.testing.assert_array_equal(session.spectrum.noticed, expected)


def test_rmf_loaded_once_across_units(prepared, job):
    engine, session = prepared
    run_all(engine, job)
    run_all(engine, job)
    assert session.rmf_loads == [str(job.rmf.path)]
    assert len(session.spectra_loaded) == 1
    assert all(f["settings"]["response"] == "" for f in session.fakeits)  # reuse the loaded one


def test_one_modified_arf_per_theta_in_scratch_removed_after_the_unit(prepared, job):
    engine, session = prepared
    scratch = engine.scratch
    original = session.arf_loads[0]["path"]
    np.testing.assert_array_equal(session.arf_loads[0]["specresp"], job.arf.specresp)
    for k in range(job.grid.n_units()):
        unit = job.grid.unit(k)
        before = len(session.arf_loads)
        engine.run_unit(unit)
        loads = session.arf_loads[before:]
        modified = {a["path"] for a in loads if a["path"] != original}
        params = job.grid.theta_parameters(np.array([unit.theta]))
        arf = job.family.apply(job.arf.energies, job.arf.specresp, params)
        if arf.status[0] != Status.OK:
            assert not loads  # nothing written, nothing loaded
            continue
        assert len(modified) == 1
        (path,) = modified
        assert Path(path).parent == scratch and all(a["existed"] for a in loads)
        assert not Path(path).exists()  # removed once the unit is done
        for a in loads:
            if a["path"] == path:
                np.testing.assert_array_equal(a["specresp"], arf.values[0])
    assert sorted(p.name for p in scratch.iterdir()) == ["original.arf", "template.pha"]


def test_fit_protocol_per_point(prepared, job):
    engine, session = prepared
    original = session.arf_loads[0]["path"]
    unit = job.grid.unit(2)
    res = engine.run_unit(unit)
    assert (res.status == Status.OK).all()
    assert len(session.fakeits) == unit.size
    assert len(session.performs) == 2 * unit.size
    temps = job.grid.temperatures
    for i, flat in enumerate(range(unit.start, unit.stop)):
        fake_it = session.fakeits[i]
        t1, t1m = session.performs[2 * i : 2 * i + 2]
        assert fake_it["arf"] != original  # simulated with the modified ARF
        assert fake_it["truth"] == temps[flat % temps.size]
        assert fake_it["noWrite"] is True and fake_it["settings"]["exposure"] == "20000.0"
        assert t1["arf"] == original and t1m["arf"] == fake_it["arf"]  # T1, then T1'
        assert t1["start"] == t1m["start"] == fake_it["truth"]  # each fit starts at the truth
    truth = temps[np.arange(unit.start, unit.stop) % temps.size]
    np.testing.assert_allclose(res.results[:, 1], truth * fake_xspec.ARF_FACTOR[0])
    np.testing.assert_allclose(res.results_modified[:, 1], truth * fake_xspec.ARF_FACTOR[1])
    np.testing.assert_allclose(res.results[:, 0], 0.9 * res.results[:, 1])
    np.testing.assert_allclose(res.extras["cstat_modified"], 100.0 + fake_xspec.ARF_FACTOR[1])


def test_scratch_removed_at_close_and_when_collected(fake, job):
    engine = XspecEngine()
    engine.prepare(job)
    scratch = engine.scratch
    assert scratch.is_dir()
    engine.close()
    assert not scratch.exists() and engine.scratch is None
    engine.close()  # twice is fine

    engine = XspecEngine()
    engine.prepare(job)
    scratch = engine.scratch
    del engine
    gc.collect()
    assert not scratch.exists()


def test_unprepared_engine_refuses_to_run(job):
    with pytest.raises(EngineError, match="prepare"):
        XspecEngine().run_unit(job.grid.unit(0))


# --------------------------------------------------------------------------- seeds, noise


def test_point_seed_is_a_positive_31_bit_int_from_the_seed_sequence():
    seeds = [point_seed(99, k) for k in range(1000)]
    assert all(isinstance(s, int) and 0 < s < 2**31 for s in seeds)
    assert len(set(seeds)) == len(seeds)
    assert point_seed(99, 7) == point_seed(99, 7) != point_seed(100, 7)


@pytest.mark.parametrize("order", [None, [2, 0, 1], [1, 2, 0]])
def test_seed_set_per_point_whatever_the_order(fake, job, order):
    engine = XspecEngine()
    engine.prepare(job)
    results = run_all(engine, job, order)
    engine.close()
    units = [job.grid.unit(k) for k in range(job.grid.n_units())]
    ran = [units[k] for k in (order or range(len(units)))]
    flats = [f for u in ran if u.theta != 0 for f in range(u.start, u.stop)]  # θ 0: no fakeit
    assert [f["seed"] for f in fake.session.fakeits] == [point_seed(99, f) for f in flats]
    p = points(results)
    ok = p["status"] == Status.OK
    assert ok.sum() == len(flats)
    # the counts are the fake's draw from Xset.seed: the same for a flat index in any order
    rng_counts = [
        np.random.default_rng(point_seed(99, f))
        .poisson(np.full(job.rmf.channels.size, fake_xspec.EXPECTED_PER_CHANNEL))[
            job.rmf.band_channels(0.5, 10.0)
        ]
        .sum()
        for f in sorted(flats)
    ]
    np.testing.assert_allclose(p["counts"][ok], rng_counts)


@pytest.mark.parametrize(("noise", "stats"), [("asimov", False), ("poisson", True)])
def test_apply_stats_follows_the_noise(fake, noise, stats):
    job = make_job(noise=noise, slopes="[0.01]")
    engine = XspecEngine()
    engine.prepare(job)
    engine.run_unit(job.grid.unit(0))
    engine.close()
    assert [f["applyStats"] for f in fake.session.fakeits] == [stats, stats]


def test_error_command_carries_error_delta(fake):
    job = make_job(delta=2.706, slopes="[0.01]")
    engine = XspecEngine()
    engine.prepare(job)
    engine.run_unit(job.grid.unit(0))
    engine.close()
    commands = fake.session.errors
    assert len(commands) == 4
    for command in commands:
        words = command.split()
        assert words[0] == "stopat" and "maximum" in words
        assert words[-2] == "2.706" and words[-1] == "2"  # Δstat, then kT = parameter 2


# --------------------------------------------------------------------------- statuses

LIMITS = (0.05, 64.0)


def _flags(*names):
    return "".join("T" if f in names else "F" for f in ERROR_FLAGS)


@pytest.mark.parametrize(
    ("best", "lo", "hi", "flags", "status", "expected"),
    [
        (5.0, 4.5, 5.6, _flags(), Status.OK, [4.5, 5.0, 5.6]),
        (5.0, 4.5, 5.6, _flags("hit hard lower limit"), Status.BOUND_AT_LIMIT, [None, 5.0, 5.6]),
        (5.0, 4.5, 64.0, _flags("hit hard upper limit"), Status.BOUND_AT_LIMIT, [4.5, 5.0, None]),
        # pegged at the limit (XSPEC reports the parameter as frozen, no bounds)
        (64.0, 0.0, 0.0, _flags("parameter was frozen"), Status.BOUND_AT_LIMIT, [None, 64.0, None]),
        (0.05, 0.0, 0.3, _flags(), Status.BOUND_AT_LIMIT, [None, 0.05, 0.3]),
        (5.0, 4.5, 5.6, _flags("new minimum found"), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, _flags("non-monotonicity detected"), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, _flags("minimization may have run into problem"), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, _flags("reduced chi-squared too high"), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, _flags("search failed in -ve direction"), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, _flags("search failed in +ve direction"), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, _flags("parameter was frozen"), Status.FIT_FAILED, None),
        (
            5.0,
            4.5,
            5.6,
            _flags("hit hard lower limit", "search failed in -ve direction"),
            Status.BOUND_AT_LIMIT,
            [None, 5.0, 5.6],
        ),
        (5.0, 0.0, 0.0, _flags(), Status.FIT_FAILED, None),  # no bounds, no flag
        (5.0, 5.2, 5.6, _flags(), Status.FIT_FAILED, None),  # a bound on the wrong side
        (float("nan"), 4.5, 5.6, _flags(), Status.FIT_FAILED, None),
        (5.0, 4.5, 5.6, "FFFF", Status.ERROR, None),  # not XSPEC's nine letters
    ],
)
def test_interpret_error(best, lo, hi, flags, status, expected):
    values, got = interpret_error(best, (lo, hi, flags), LIMITS)
    assert got == status
    want = np.full(3, np.nan) if expected is None else np.array(expected, dtype=float)
    np.testing.assert_array_equal(values, want)


def test_error_flags_become_point_statuses(prepared, job):
    engine, session = prepared
    original = session.arf_loads[0]["path"]
    # the fits with the modified ARF hit the lower kT limit
    session.flags = lambda s: _flags(
        *(() if s.spectrum.arf_path == original else ("hit hard lower limit",))
    )
    res = engine.run_unit(job.grid.unit(1))
    assert (res.status == Status.OK).all()  # T1: its own fit's status, not the worse of two
    assert (res.status_modified == Status.BOUND_AT_LIMIT).all()
    assert np.isfinite(res.results).all()
    assert np.isnan(res.results_modified[:, 0]).all()
    assert np.isfinite(res.results_modified[:, 1:]).all()


def test_new_minimum_refits_then_checks_with_the_profile(prepared, job):
    engine, session = prepared
    calls = []

    def once(s):
        calls.append(1)
        return _flags("new minimum found") if len(calls) == 1 else _flags()

    session.flags = once
    unit = job.grid.unit(1)
    res = engine.run_unit(unit)
    assert (res.status == Status.OK).all()
    assert len(session.performs) == 2 * unit.size + 1  # one fit ran again

    # still set after the retries: the engine checks XSPEC's answer with its own profile
    # search (Fit.perform with kT frozen); the fake's statistic is flat, so the confidence
    # region reaches both kT limits: both bounds NaN, BOUND_AT_LIMIT
    session.flags = lambda s: _flags("new minimum found")
    before = len(session.performs)
    res = engine.run_unit(unit)
    assert len(session.errors) and len(session.performs) - before > 2 * unit.size * (
        NEW_MINIMUM_RETRIES + 1
    )
    for status, values in ((res.status, res.results), (res.status_modified, res.results_modified)):
        assert (status == Status.BOUND_AT_LIMIT).all()
        assert np.isnan(values[:, [0, 2]]).all() and np.isfinite(values[:, 1]).all()
    assert session.model.by_name("kT").frozen is False


def test_best_fit_the_error_search_finds_is_the_result(prepared, job):
    """XSPEC 12.9's error command, meeting a lower statistic, fits again from there, sets
    the parameters to that fit and repeats the search (flags then all F): the result is
    that fit, not the one before the search (which lies outside the new bounds)."""
    engine, session = prepared

    def new_best(s):
        kt = s.model.by_name("kT")
        kt.values = kt.values[0] * 1.3
        s.statistic -= 2.5

    session.hooks["error"] = new_best
    unit = job.grid.unit(1)
    res = engine.run_unit(unit)
    del session.hooks["error"]
    assert (res.status == Status.OK).all()
    truth = job.grid.temperatures[np.arange(unit.start, unit.stop) % job.grid.temperatures.size]
    np.testing.assert_allclose(res.results[:, 1], 1.3 * truth)
    np.testing.assert_allclose(res.results[:, [0, 2]], np.outer(1.3 * truth, [0.9, 1.1]))
    np.testing.assert_allclose(res.extras["cstat"], 100.0 + 1.0 - 2.5)


def test_exception_in_a_point_fails_that_point_only(prepared, job):
    engine, session = prepared
    unit = job.grid.unit(2)
    bad = unit.start + 1

    def explode(s):
        if s.settings["Xset.seed"] == point_seed(99, bad):
            raise Exception("***XSPEC Error: injected")

    session.hooks["perform"] = explode
    res = engine.run_unit(unit)
    i = bad - unit.start
    assert res.status[i] == Status.ERROR
    assert np.isnan(res.results[i]).all() and np.isnan(res.results_modified[i]).all()
    assert all(np.isnan(v[i]) for v in res.extras.values())
    others = np.arange(unit.size) != i
    assert (res.status[others] == Status.OK).all()
    assert np.isfinite(res.results[others]).all()
    # and the next unit runs normally (the ARF is loaded afresh)
    del session.hooks["perform"]
    assert (engine.run_unit(job.grid.unit(1)).status == Status.OK).all()


def test_exception_in_fakeit_and_error(prepared, job):
    engine, session = prepared
    for hook in ("fakeit", "error"):
        session.hooks = {hook: lambda s: (_ for _ in ()).throw(Exception("XSPEC says no"))}
        res = engine.run_unit(job.grid.unit(1))
        assert (res.status == Status.ERROR).all()
        assert np.isnan(res.results).all()


def test_negative_arf_fails_the_unit_without_xspec(prepared, job):
    engine, session = prepared
    res = engine.run_unit(job.grid.unit(0))  # slope -0.5
    assert (res.status == Status.ARF_NEGATIVE).all()
    assert np.isnan(res.results).all()
    assert not session.fakeits and len(session.arf_loads) == 1


def test_no_counts(prepared, job, monkeypatch):
    engine, session = prepared
    monkeypatch.setattr(fake_xspec, "EXPECTED_PER_CHANNEL", 0.0)
    res = engine.run_unit(job.grid.unit(1))
    assert (res.status == Status.NO_COUNTS).all()
    assert (res.extras["counts"] == 0).all()
    assert np.isnan(res.results).all() and not session.performs


def test_a_model_of_zeros_is_a_config_error(fake, job):
    fake.session.model_zero = True
    engine = XspecEngine()
    with pytest.raises(ConfigError, match=r"source\.model"):
        engine.prepare(job)
    assert not engine._scratch.exists()  # a failed prepare leaves nothing behind


def test_bremss_with_a_redshift_is_a_config_error(fake):
    # refused by the configuration itself now, before any engine (test_config.py)
    text = CONFIG.format(noise="poisson", delta=1.0, slopes="[0.01]", background="")
    with pytest.raises(ConfigError, match="has no redshift"):
        job = job_from_config(parse_config(text.replace("zbremss", "bremss"), source="<t>"))
        XspecEngine().prepare(job)


def test_two_engines_share_the_session(fake, job):
    first = XspecEngine()
    first.prepare(job)
    a = first.run_unit(job.grid.unit(1))
    second = XspecEngine()
    second.prepare(job)  # takes the XSPEC session over
    b = second.run_unit(job.grid.unit(1))
    c = first.run_unit(job.grid.unit(1))  # sets the session up again for itself
    for x in (b, c):
        np.testing.assert_array_equal(x.results, a.results)
        np.testing.assert_array_equal(x.extras["counts"], a.extras["counts"])
    assert len(fake.session.spectra_loaded) == 3
    first.close()
    second.close()


# --------------------------------------------------------------------------- background


def _background_pha(path, rmf):
    n = rmf.channels.size
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="CHANNEL", format="J", array=rmf.channels.astype(np.int32)),
            fits.Column(name="COUNTS", format="J", array=np.ones(n, np.int32)),
        ]
    )
    table.header["EXTNAME"] = "SPECTRUM"
    table.header["HDUCLASS"] = "OGIP"
    table.header["HDUCLAS1"] = "SPECTRUM"
    table.header["EXPOSURE"] = 40000.0
    table.header["BACKSCAL"] = 4.0
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def test_background_and_source_backscal(fake, job, tmp_path):
    bkg = _background_pha(tmp_path / "bkg.pha", job.rmf)
    with_bkg = make_job(
        slopes="[0.01]", background='background = "bkg.pha"\nbackscal = 0.25', path=tmp_path
    )
    engine = XspecEngine()
    engine.prepare(with_bkg)
    res = engine.run_unit(with_bkg.grid.unit(0))
    (template,) = fake.session.spectra_loaded
    with fits.open(template) as f:
        assert f["SPECTRUM"].header["BACKSCAL"] == 0.25
    engine.close()
    assert (res.status == Status.OK).all()
    assert fake.session.background_loads == [str(bkg)]
    # given again on every fakeit: never the previous point's simulated background
    assert [f["settings"]["background"] for f in fake.session.fakeits] == [str(bkg)] * 2


# --------------------------------------------------------------------------- helpers


def test_channel_ranges():
    assert channel_ranges(np.array([], dtype=int)) == ""
    assert channel_ranges(np.array([1, 2, 3, 5, 7, 8])) == "1-3 5 7-8"


def test_band_ignore_ranges_match_band_channels(job):
    ranges, n = band_ignore_ranges(job.rmf, (0.5, 10.0))
    mask = job.rmf.band_channels(0.5, 10.0)
    assert n == mask.sum()
    ignored = np.zeros(mask.size, dtype=bool)
    for token in ranges.split():
        a, _, b = token.partition("-")
        ignored[int(a) - 1 : int(b or a)] = True
    np.testing.assert_array_equal(~ignored, mask)


# --------------------------------------------------------------------------- contract


def test_contract_with_the_fake(fake, job):
    """The engine contract's checks that do not need physics, on the fake."""
    engine = XspecEngine()
    engine.prepare(job)
    whole = points(run_all(engine, job))
    split = {}
    n = job.grid.n_units(max_points=1)
    for k in reversed(range(n)):
        unit = job.grid.unit(k, max_points=1)
        split[unit.start] = engine.run_unit(unit)
    engine.close()
    for name, values in whole.items():
        np.testing.assert_array_equal(values, points(split)[name])
    assert whole["results"].dtype == np.float64 and whole["status"].dtype == np.int8
    failed = whole["status"] != Status.OK
    assert failed.sum() == job.grid.temperatures.size  # θ 0
    for name in ("results", "results_modified", *EXTRAS):
        assert np.isnan(whole[name][failed]).all()
        assert np.isfinite(whole[name][~failed]).all()
    counts = whole["counts"][~failed]
    assert np.array_equal(counts, np.round(counts))
