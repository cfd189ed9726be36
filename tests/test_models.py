"""Source spectra from XSPEC's model functions (xrmod.models).

References are computed independently of xrmod where XSPEC's definitions
allow it: the trapezoid rule of bremss (XSPEC's xsbrmv.f), the redshift
relation of zbremss (xszbrm.f), direct calls of the library's functions,
and the exp(-nH sigma) structure of the absorbers.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("xspectrampoline") is None:  # found, not imported: its import
    pytest.skip(  # loads $HEADAS's libraries, which in HEASoft's environment fails
        "xspectrampoline (XSPEC's model library) is not installed: pip install xspectrampoline",
        allow_module_level=True,
    )

from xrmod import models, xspec_models
from xrmod.errors import ConfigError, InputError, ResponseError
from xrmod.models import ABSORBERS, EMISSIONS, MIN_ENERGY, SourceModel, load_model

ARF = Path(models.__file__).parent / "data" / "pn.arf"
EDGES = np.geomspace(0.2, 12.0, 301)
LO, HI = EDGES[:-1], EDGES[1:]


def _apec_files_present() -> bool:
    return xspec_models.apec_data_problem(xspec_models.library()) is None


@pytest.fixture(scope="module")
def pn_grid() -> tuple[np.ndarray, np.ndarray]:
    from astropy.io import fits

    with fits.open(ARF) as hdul:
        data = hdul["SPECRESP"].data
        return (
            np.asarray(data["ENERG_LO"], dtype=np.float64),
            np.asarray(data["ENERG_HI"], dtype=np.float64),
        )


@pytest.fixture(scope="module")
def zbremss() -> SourceModel:
    return load_model("tbabs*zbremss")


@pytest.fixture(scope="module")
def bremss() -> SourceModel:
    return load_model("wabs*bremss")


def _raw(symbol: str, edges: np.ndarray, params: list[float]) -> np.ndarray:
    """One direct call of a library function, bypassing xrmod.models."""
    from xrmod.xspec_library import load_library

    func = load_library().model(symbol)
    n = edges.size - 1
    dtype = np.float32 if symbol.endswith("_") else np.float64
    out = np.zeros(n, dtype)
    func(edges.astype(dtype), np.asarray(params, dtype), out, np.zeros(n, dtype))
    return out.astype(np.float64)


# ----------------------------------------------------------------- the component table


def _model_dat(name: str) -> tuple[str, list[tuple[str, float, float]]] | None:
    """Function and (parameter, hard min, hard max) of model *name* in XSPEC's model.dat."""
    manager = Path(xspec_models.library().string("FGDATD"))
    lines = (manager / "model.dat").read_text().splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if len(words) >= 6 and words[0].lower() == name and words[5] in ("add", "mul"):
            params = []
            for row in lines[i + 1 : i + 1 + int(words[1])]:
                # name unit default hardmin softmin softmax hardmax delta; unit may be " "
                fields = row.replace('" "', "-").split()
                params.append((fields[0], float(fields[3]), float(fields[6])))
            return words[4], params
    return None


@pytest.mark.parametrize("name", [*ABSORBERS, *EMISSIONS])
def test_component_matches_model_dat(name):
    component = {**ABSORBERS, **EMISSIONS}[name]
    function, params = _model_dat(name)
    symbol = function if function.startswith("C_") else function.lower() + "_"
    assert component.symbol == symbol
    assert component.parameters == tuple(p[0] for p in params)
    assert component.limits == tuple((p[1], p[2]) for p in params)


def test_xspec_has_no_zapec():
    assert _model_dat("zapec") is None
    with pytest.raises(ConfigError, match=r"no model 'zapec'.*tbabs\*apec"):
        load_model("tbabs*zapec")


# ----------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("expression", "match"),
    [
        ("tbabs+zbremss", "cannot read model"),
        ("tbabs", "cannot read model"),
        ("tbabs*phabs*zbremss", "cannot read model"),
        ("powerlaw*zbremss", "unsupported model"),
        ("tbabs*mekal", "unsupported model"),
        ("zbremss*tbabs", "absorber first"),
    ],
)
def test_bad_expression(expression, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_model(expression)
    assert info.value.key == "source.model"
    assert isinstance(info.value, InputError)


def test_expression_is_normalised():
    model = load_model(" TBabs * zBremss ")
    assert (model.expression, model.absorber, model.emission) == (
        "tbabs*zbremss",
        "tbabs",
        "zbremss",
    )
    assert model.continuum_only
    assert model.kT_limits == (1.0e-4, 200.0)


def test_source_model_validates_its_fields():
    with pytest.raises(ConfigError, match="unsupported model"):
        SourceModel("tbabs*powerlaw", "tbabs", "powerlaw")
    with pytest.raises(ValueError, match="does not match"):
        SourceModel("phabs*bremss", "tbabs", "bremss")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"abundance_table": "nosuch"}, "source.abundance_table"),
        ({"cross_sections": "nosuch"}, "source.cross_sections"),
    ],
)
def test_unknown_table(kwargs, key):
    with pytest.raises(ConfigError, match="no table 'nosuch'") as info:
        load_model("tbabs*zbremss", **kwargs)
    assert info.value.key == key
    assert "angr" in str(info.value) or "vern" in str(info.value)


# ----------------------------------------------------------------- calling conventions


@pytest.mark.parametrize(
    ("expression", "absorber", "emission", "params"),
    [
        ("tbabs*zbremss", "C_tbabs", "xszbrm_", [4.0, 0.1]),
        ("phabs*bremss", "xsphab_", "xsbrms_", [4.0]),
        ("wabs*zbremss", "xsabsw_", "xszbrm_", [4.0, 0.1]),
    ],
)
def test_equals_direct_library_calls(expression, absorber, emission, params):
    model = load_model(expression)
    z = params[1] if len(params) > 1 else 0.0
    got = model.photon_flux(LO, HI, 4.0, nH=0.07, redshift=z, norm=2.5e-3)
    xspec_models.set_tables("angr", "vern")
    want = _raw(absorber, EDGES, [0.07]) * _raw(emission, EDGES, params) * 2.5e-3
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert got.dtype == np.float64


@pytest.mark.parametrize(("symbol", "params"), [("C_tbabs", [0.07]), ("xszbrm_", [4.0, 0.1])])
def test_ctypes_layer_calls_the_library_function(symbol, params):
    with xspec_models.LOCK:
        xspec_models.set_tables("angr", "vern")
        got = xspec_models.call(symbol, EDGES, params)
    assert xspec_models.called(symbol)
    assert got.dtype == np.float64 and got.shape == (EDGES.size - 1,)
    np.testing.assert_array_equal(got, _raw(symbol, EDGES, params))


def test_models_exports_the_names_it_had():
    # other modules import these from xrmod.models; the ctypes layer is xrmod.xspec_models
    assert models.silence_c_output is xspec_models.silence_c_output
    assert models.MIN_ENERGY == xspec_models.MIN_ENERGY == 1.0e-10
    for name in models.__all__:
        assert hasattr(models, name), name
    assert {"KT_BREAKS", "KT_JUMPS", "KT_SIDE_EPS", "silence_c_output"} <= set(models.__all__)


def test_product_structure(zbremss):
    flux = zbremss.photon_flux(LO, HI, 3.0, nH=0.2, redshift=0.05, norm=1e-3)
    trans = zbremss.transmission(LO, HI, nH=0.2)
    emis = zbremss.emission_flux(LO, HI, 3.0, redshift=0.05, norm=1e-3)
    np.testing.assert_allclose(flux, trans * emis, rtol=1e-15, atol=0)
    assert ((trans > 0) & (trans <= 1)).all()
    assert (emis > 0).all() and (flux > 0).all()


def test_norm_is_linear(zbremss):
    one = zbremss.photon_flux(LO, HI, 6.0, nH=0.05, redshift=0.1, norm=1e-3)
    three = zbremss.photon_flux(LO, HI, 6.0, nH=0.05, redshift=0.1, norm=3e-3)
    np.testing.assert_allclose(three, 3.0 * one, rtol=1e-15, atol=0)


def test_table_equals_rows(zbremss, pn_grid):
    kts = [0.7, 2.0, 13.6]
    table = zbremss.photon_flux_table(*pn_grid, kts, nH=0.05, redshift=0.1, norm=1e-3)
    assert table.shape == (3, pn_grid[0].size)
    for row, kT in zip(table, kts, strict=True):
        np.testing.assert_array_equal(
            row, zbremss.photon_flux(*pn_grid, kT, nH=0.05, redshift=0.1, norm=1e-3)
        )


def test_transmission_cache_returns_copies(zbremss):
    first = zbremss.transmission(LO, HI, nH=0.3)
    first[:] = -1.0
    again = zbremss.transmission(LO, HI, nH=0.3)
    assert (again > 0).all()


# ----------------------------------------------------------------- bremss, zbremss


def _bremss_integrand(bremss, energies, kT):
    """A(E) of xsbrmv.f, read off one bin [E, E_big] whose upper edge is past 50 kT.

    xsbrmv.f sets A(E_hi) = 0 for E_hi >= 50 kT, so that bin holds exactly
    0.5 * A(E) * (E_big - E).
    """
    e_big = 60.0 * kT
    return np.array(
        [2.0 * bremss.emission_flux([e], [e_big], kT)[0] / (e_big - e) for e in energies]
    )


def test_bremss_is_xspec_trapezoid(bremss):
    kT = 3.0
    edges = np.linspace(0.5, 9.0, 41).astype(np.float32).astype(np.float64)
    a = _bremss_integrand(bremss, edges, kT)
    want = 0.5 * (a[:-1] + a[1:]) * np.diff(edges)
    got = bremss.emission_flux(edges[:-1], edges[1:], kT)
    np.testing.assert_allclose(got, want, rtol=2e-6)
    # The integrand is the thermal shape: exp(-E/kT)/E times a slowly varying Gaunt factor.
    gaunt = a * edges * np.exp(edges / kT) * np.sqrt(kT)
    assert (gaunt > 0.5).all() and (gaunt < 3.0).all()


@pytest.mark.parametrize("z", [0.0, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("kT", [0.6, 5.0, 13.6])
def test_zbremss_is_redshifted_bremss(zbremss, bremss, z, kT):
    # xszbrm.f: photar(E; kT, z) = bremss(E (1+z); kT, He/H = 0.085) / (1+z), in float32.
    shifted = (EDGES.astype(np.float32) * np.float32(1.0 + z)).astype(np.float64)
    want = bremss.emission_flux(shifted[:-1], shifted[1:], kT) / np.float32(1.0 + z)
    got = zbremss.emission_flux(LO, HI, kT, redshift=z)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bremss_refuses_redshift(bremss):
    with pytest.raises(ConfigError, match=r"bremss has no redshift.*zbremss") as info:
        bremss.photon_flux(LO, HI, 2.0, nH=0.05, redshift=0.1)
    assert info.value.key == "source.redshift"


def test_abundance_ignored_by_bremss(zbremss):
    a = zbremss.emission_flux(LO, HI, 2.0, redshift=0.1, abundance=0.3)
    b = zbremss.emission_flux(LO, HI, 2.0, redshift=0.1, abundance=1.0)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kT", "nH"), [(1e-5, 0.05), (250.0, 0.05), (float("nan"), 0.05), (2.0, -0.1)]
)
def test_parameters_outside_hard_limits(zbremss, kT, nH):
    with pytest.raises(ConfigError, match="outside XSPEC's hard limits"):
        zbremss.photon_flux(LO, HI, kT, nH=nH, redshift=0.1)


def test_bad_norm(zbremss):
    with pytest.raises(ConfigError, match="norm"):
        zbremss.photon_flux(LO, HI, 2.0, nH=0.05, norm=-1.0)


def test_all_zero_emission_is_config_error(zbremss):
    # bremss is cut off above 50 kT: a 0.2 keV plasma gives nothing over 20-30 keV.
    with pytest.raises(ConfigError, match=r"zbremss is all zeros over 20-30 keV at kT = 0.2"):
        zbremss.photon_flux([20.0, 25.0], [25.0, 30.0], 0.2, nH=0.05)


def test_absorbed_to_zero_is_config_error(zbremss):
    with pytest.raises(ConfigError, match="absorbed to all zeros"):
        zbremss.photon_flux([0.1], [0.11], 2.0, nH=1.0e5)


# ----------------------------------------------------------------- absorbers


@pytest.mark.parametrize("absorber", list(ABSORBERS))
def test_absorber_is_exp_minus_nh_sigma(absorber):
    model = load_model(f"{absorber}*zbremss")
    t1 = model.transmission(LO, HI, nH=0.02)
    t2 = model.transmission(LO, HI, nH=0.04)
    t5 = model.transmission(LO, HI, nH=0.10)
    assert ((t1 > 0) & (t1 <= 1)).all()
    # Monotone: more gas absorbs more in every bin (strictly where it absorbs at all).
    assert (t5 <= t2).all() and (t2 <= t1).all()
    assert (t5 < t1)[EDGES[1:] < 5.0].all()
    tau1, tau2, tau5 = -np.log(t1), -np.log(t2), -np.log(t5)
    if absorber == "tbabs":
        # One cross-section per bin: the optical depth is exactly proportional to nH.
        np.testing.assert_allclose(tau2, 2.0 * tau1, rtol=1e-10, atol=0)
        np.testing.assert_allclose(tau5, 5.0 * tau1, rtol=1e-10, atol=0)
    else:
        # phabs and wabs average exp(-nH sigma(E)) over energies inside a bin: a
        # mixture of exponentials, so -ln T is concave in nH (tau(a nH) <= a tau(nH),
        # up to float32 rounding) and near-linear away from absorption edges.
        slack = 1e-5 * tau1 + 1e-6
        assert (tau2 <= 2.0 * tau1 + 2 * slack).all()
        assert (tau5 <= 5.0 * tau1 + 5 * slack).all()
        np.testing.assert_allclose(tau5, 5.0 * tau1, rtol=0.02, atol=1e-5)
    # Transparent to hard X-rays, opaque below the carbon edge for a thick column.
    assert t1[-1] > 0.999
    assert model.transmission([0.1], [0.11], nH=1.0)[0] < 1e-5
    assert (model.transmission(LO, HI, nH=0.0) == 1.0).all()


def test_abundance_table_reaches_the_models():
    angr = load_model("tbabs*zbremss", abundance_table="angr")
    wilm = load_model("tbabs*zbremss", abundance_table="wilm")
    t_angr = angr.transmission(LO, HI, nH=0.1)
    t_wilm = wilm.transmission(LO, HI, nH=0.1)
    # Wilms abundances have fewer metals: less absorption above the edges.
    assert (t_wilm >= t_angr).all() and (t_wilm > t_angr).any()
    # Interleaved use: each model keeps its own table.
    xspec_models.set_tables("wilm", "vern")
    fresh_angr = load_model("phabs*zbremss", abundance_table="angr")
    fresh_wilm = load_model("phabs*zbremss", abundance_table="wilm")
    p_angr = fresh_angr.transmission(LO, HI, nH=0.1)
    p_wilm = fresh_wilm.transmission(LO, HI, nH=0.1)
    assert np.array_equal(fresh_angr.transmission(LO, HI, nH=0.1), p_angr)
    assert not np.array_equal(p_angr, p_wilm)
    # wabs ignores the tables.
    w_angr = load_model("wabs*zbremss", abundance_table="angr").transmission(LO, HI, nH=0.1)
    w_wilm = load_model("wabs*zbremss", abundance_table="wilm").transmission(LO, HI, nH=0.1)
    np.testing.assert_array_equal(w_angr, w_wilm)


def test_tables_reset_after_another_user_changes_them():
    model = load_model("phabs*bremss", abundance_table="angr")
    reference = model.transmission(LO, HI, nH=0.2)
    xspec_models.set_tables("wilm", "bcmc")  # e.g. Sherpa's set_xsabund in the same process
    fresh = SourceModel("phabs*bremss", "phabs", "bremss", "angr", "vern")
    np.testing.assert_array_equal(fresh.transmission(LO, HI, nH=0.2), reference)


# ----------------------------------------------------------------- energy grids


def test_zero_lower_edge_is_replaced(zbremss):
    edges = np.linspace(0.0, 3.0, 61)
    got = zbremss.photon_flux(edges[:-1], edges[1:], 2.0, nH=0.05, redshift=0.1)
    assert np.isfinite(got).all()
    lo = edges[:-1].copy()
    lo[0] = MIN_ENERGY
    want = zbremss.photon_flux(lo, edges[1:], 2.0, nH=0.05, redshift=0.1)
    np.testing.assert_array_equal(got, want)
    assert edges[0] == 0.0  # the caller's array is untouched


def test_inputs_untouched(zbremss, pn_grid):
    # xszbrm_ scales the edges it is given by (1+z) and back in float32, which
    # moves about 7 % of them by one ulp: xrmod must hand it a copy.
    lo, hi = (a.astype(np.float32).astype(np.float64) for a in pn_grid)
    lo0, hi0 = lo.copy(), hi.copy()
    first = zbremss.emission_flux(lo, hi, 4.0, redshift=0.1)
    np.testing.assert_array_equal(lo, lo0)
    np.testing.assert_array_equal(hi, hi0)
    np.testing.assert_array_equal(zbremss.emission_flux(lo, hi, 4.0, redshift=0.1), first)


def test_non_contiguous_bins(bremss):
    lo = np.array([0.5, 0.6, 1.0, 1.2, 3.0])
    hi = np.array([0.6, 0.7, 1.2, 1.5, 4.0])
    got = bremss.emission_flux(lo, hi, 2.0)
    want = np.concatenate(
        [
            bremss.emission_flux(lo[:2], hi[:2], 2.0),
            bremss.emission_flux(lo[2:4], hi[2:4], 2.0),
            bremss.emission_flux(lo[4:], hi[4:], 2.0),
        ]
    )
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("lo", "hi", "match"),
    [
        ([1.0, 2.0], [2.0], "one length"),
        ([1.0, 2.0], [2.0, 2.0], "ENERG_HI 2.0 <= ENERG_LO 2.0"),
        ([1.0, 1.5], [2.0, 3.0], "overlap"),
        ([-1.0, 2.0], [2.0, 3.0], "below 0"),
        ([0.0, 2.0], [1e-12, 3.0], "too narrow"),
        ([1.0, np.nan], [2.0, 3.0], "non-finite"),
    ],
)
def test_bad_energy_grid(bremss, lo, hi, match):
    with pytest.raises(ResponseError, match=match):
        bremss.emission_flux(lo, hi, 2.0)


def test_pn_grid(zbremss, pn_grid):
    lo, hi = pn_grid
    assert lo.size == 2067
    flux = zbremss.photon_flux(lo, hi, 5.0, nH=0.05, redshift=0.1, norm=1e-3)
    assert flux.shape == lo.shape and np.isfinite(flux).all() and (flux >= 0).all()
    band = (lo >= 0.5) & (hi <= 10.0)
    assert (flux[band] > 0).all()


# ----------------------------------------------------------------- apec


@pytest.mark.skipif("_apec_files_present()", reason="this HEADAS has AtomDB files for apec")
def test_apec_without_atomic_data_is_config_error():
    for _ in range(2):  # a second call of apec without its files crashes XSPEC: never made
        with pytest.raises(ConfigError, match=r"apec needs XSPEC atomic data; set HEADAS") as info:
            load_model("tbabs*apec")
        assert "tbabs*zbremss" in str(info.value)
        assert info.value.key == "source.model"
        assert info.value.exit_code == 2


@pytest.mark.skipif("not _apec_files_present()", reason="no AtomDB files for apec here")
def test_apec_with_atomic_data():
    model = load_model("tbabs*apec", abundance_table="wilm")
    assert not model.continuum_only
    flux = model.photon_flux(LO, HI, 3.0, nH=0.05, redshift=0.1, abundance=0.3, norm=1e-3)
    assert np.isfinite(flux).all() and (flux > 0).any()


# ----------------------------------------------------------------- chatter


def test_first_calls_print_nothing(capfd):
    # A fresh process: the library is loaded, the tables set and tbabs called for
    # the first time (its banner), all inside xrmod.models.
    code = textwrap.dedent(
        """
        import numpy as np
        from xrmod.models import load_model
        model = load_model("tbabs*zbremss", abundance_table="wilm", cross_sections="bcmc")
        flux = model.photon_flux(np.array([0.5, 1.0]), np.array([1.0, 2.0]), 2.0, nH=0.1)
        print("RESULT", float(flux.sum()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    assert done.stdout.startswith("RESULT ") and done.stdout.count("\n") == 1
    assert done.stderr == ""


def test_library_banner_would_print_otherwise():
    # Control for the test above: the same first tbabs call made directly prints its banner.
    code = textwrap.dedent(
        """
        import numpy as np
        import xspectrampoline
        f = xspectrampoline.get_libraries().get_model("C_tbabs")
        f(np.array([0.5, 1.0]), np.array([0.1]), np.zeros(1), np.zeros(1))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    assert "tbvabs" in done.stdout and "Solar Abundance Vector" in done.stdout


def test_silence_c_output(capfd, caplog):
    libc = ctypes.CDLL(None)
    with caplog.at_level("DEBUG", logger="xrmod.xspec_models"), models.silence_c_output():
        libc.puts(b"from C to stdout")
        os.write(2, b"to fd 2\n")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "from C to stdout" in caplog.text and "to fd 2" in caplog.text
    print("after")
    assert capfd.readouterr().out == "after\n"


def test_table_change_prints_nothing(capfd):
    load_model("phabs*zbremss", abundance_table="lodd", cross_sections="obcm")
    load_model("phabs*zbremss", abundance_table="aspl", cross_sections="vern")
    with pytest.raises(ConfigError):
        load_model("phabs*zbremss", cross_sections="nosuch")  # XSPEC prints an error here
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(models.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env
