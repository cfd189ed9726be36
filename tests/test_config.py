"""Tests of xrmod.config: the TOML schema of DESIGN.md §3."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xrmod import config as cfgmod
from xrmod.config import (
    Config,
    load_config,
    parse_config,
    template_text,
)
from xrmod.errors import ConfigError, InputError, ModifierError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The smallest valid document: only the required keys.
MINIMAL = """
[source]
temperatures = [2.0, 4.0]

[modifier.axes]
mu = 3.0
sigma = 0.5
amp = 0.1
"""


def parse(text: str, **kwargs) -> Config:
    return parse_config(text, source="test.toml", **kwargs)


def make(**sections: str) -> str:
    """MINIMAL with extra lines per section, e.g. ``make(library="seed = 3")``."""
    base = {
        "source": ["temperatures = [2.0, 4.0]"],
        "modifier.axes": ["mu = 3.0", "sigma = 0.5", "amp = 0.1"],
    }
    for section, lines in sections.items():
        base.setdefault(section.replace("__", "."), []).insert(0, lines)
    return "".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in base.items())


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, **kwargs)
    assert info.value.exit_code == 2
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_default_loads_with_documented_values():
    cfg = load_config()
    assert cfg.source_path == "<default>"
    assert cfg.text == cfgmod.default_config_text()
    lib = cfg.library
    assert (lib.output, lib.engine, lib.seed, lib.noise, lib.realizations) == (
        Path("library.h5"),
        "native",
        20261127,
        "poisson",
        1,
    )
    inst = cfg.instrument
    assert inst.bundled
    assert inst.arf.name == "pn.arf" and inst.arf.is_file()
    assert inst.rmf.name == "pn.rmf" and inst.rmf.is_file()
    assert inst.exposure == 50000.0
    assert inst.band == (0.5, 10.0)
    assert inst.background is None
    src = cfg.source
    assert src.model == "tbabs*zbremss" and src.continuum_only
    assert (src.nH, src.redshift, src.abundance, src.norm) == (0.05, 0.1, 0.3, 1.0e-3)
    assert (src.abundance_table, src.cross_sections) == ("angr", "vern")
    np.testing.assert_allclose(src.temperatures, np.geomspace(1.0, 8.0, 6))
    assert cfg.modifier.family == "gaussian"
    assert cfg.modifier.names == ("mu", "sigma", "amp")
    assert cfg.fit.statistic == "cstat"
    assert cfg.fit.error_delta == 1.0
    assert cfg.fit.kt_limits == (0.05, 64.0)
    assert cfg.grid_shape == (5, 2, 3, 6)
    assert 100 <= cfg.n_points <= 400


def test_minimal_document_takes_the_defaults():
    cfg = parse(MINIMAL)
    default = load_config()
    for section in ("library", "instrument", "fit"):
        assert getattr(cfg, section) == getattr(default, section)
    for field in ("model", "nH", "redshift", "abundance", "abundance_table", "cross_sections"):
        assert getattr(cfg.source, field) == getattr(default.source, field)
    assert cfg.source_path == "test.toml"
    assert cfg.text == MINIMAL


def test_template_parses_with_default_values():
    cfg = parse_config(template_text(), source="template.toml")
    minimal = parse(MINIMAL)
    for section in ("library", "instrument", "fit"):
        assert getattr(cfg, section) == getattr(minimal, section)
    assert cfg.modifier.names == ("mu", "sigma", "amp")


def test_template_lists_every_key():
    doc = tomllib.loads(template_text())
    assert tuple(doc) == tuple(cfgmod._SECTIONS)
    for section, keys in cfgmod._SECTIONS.items():
        assert tuple(doc[section]) == keys, section


# --------------------------------------------------------------------------- grids


def test_axis_order_is_the_file_order():
    text = """
    [source]
    temperatures = [3.0]
    [modifier.axes]
    sigma = [0.5, 1.0]
    amp = [0.1]
    mu = [2.0, 4.0, 6.0]
    """
    cfg = parse(text)
    assert cfg.modifier.names == ("sigma", "amp", "mu")
    assert cfg.modifier.shape == (2, 1, 3)
    assert list(cfg.modifier.as_dict()) == ["sigma", "amp", "mu"]
    assert cfg.grid_shape == (2, 1, 3, 1)


def axes_doc(mu: str, temperatures: str = "[3.0]") -> str:
    return (
        f"[source]\ntemperatures = {temperatures}\n[modifier.axes]\nmu = {mu}\nsigma = 1\namp = 0\n"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{ start = 0.5, stop = 10.0, num = 20 }", np.linspace(0.5, 10.0, 20)),
        ('{ start = 0.5, stop = 10.0, num = 7, spacing = "linear" }', np.linspace(0.5, 10, 7)),
        (
            '{ start = 0.5, stop = 10.0, num = 7, spacing = "log" }',
            np.logspace(np.log10(0.5), 1, 7),
        ),
        ("{ start = 4.0, stop = 1.0, num = 4 }", np.linspace(1.0, 4.0, 4)),
        ("{ start = 2.0, stop = 5.0, num = 1 }", np.array([2.0])),
        ("[3, 1.5, 2]", np.array([1.5, 2.0, 3.0])),
        ("2.5", np.array([2.5])),
        ("4", np.array([4.0])),
    ],
)
def test_axis_specs(spec, expected):
    values = parse(axes_doc(spec)).modifier.as_dict()["mu"]
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{ start = 1.0, stop = 10.0, num = 10 }", np.logspace(0, 1, 10)),
        ('{ start = 1.0, stop = 10.0, num = 4, spacing = "linear" }', np.linspace(1, 10, 4)),
        ("[8.0, 2.0, 4]", np.array([2.0, 4.0, 8.0])),
        ("5.0", np.array([5.0])),
    ],
)
def test_temperature_specs(spec, expected):
    temperatures = parse(axes_doc("3.0", temperatures=spec)).source.temperatures
    np.testing.assert_allclose(temperatures, expected, rtol=1e-12)
    assert np.all(np.diff(temperatures) > 0)


# --------------------------------------------------------------------------- paths


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_instrument_paths_resolve_against_the_config_directory(tmp_path, monkeypatch):
    (tmp_path / "resp").mkdir()
    for name in ("my.arf", "my.rmf", "bkg.pha"):
        (tmp_path / "resp" / name).write_bytes(b"")
    cfg_file = write(
        tmp_path / "job.toml",
        make(
            instrument='arf = "resp/my.arf"\nrmf = "resp/my.rmf"\nbackground = "resp/bkg.pha"',
            library='output = "out/lib.h5"',
        ),
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(cfg_file)
    assert cfg.instrument.arf == tmp_path / "resp" / "my.arf"
    assert cfg.instrument.rmf == tmp_path / "resp" / "my.rmf"
    assert cfg.instrument.background == tmp_path / "resp" / "bkg.pha"
    assert not cfg.instrument.bundled
    assert cfg.library.output == Path("out/lib.h5")  # kept as given: relative to the run's cwd
    assert cfg.source_path == str(cfg_file)


def test_relative_config_path_resolves_too(tmp_path, monkeypatch):
    (tmp_path / "a.arf").write_bytes(b"")
    (tmp_path / "a.rmf").write_bytes(b"")
    write(tmp_path / "job.toml", make(instrument='arf = "a.arf"\nrmf = "a.rmf"'))
    monkeypatch.chdir(tmp_path.parent)
    cfg = load_config(Path(tmp_path.name) / "job.toml")
    assert cfg.instrument.arf == tmp_path / "a.arf"
    assert cfg.instrument.arf.is_absolute()


def test_absolute_instrument_paths_are_kept(tmp_path):
    arf, rmf = cfgmod.bundled_response()
    cfg = parse(make(instrument=f'arf = "{arf}"\nrmf = "{rmf}"'), base_dir=tmp_path)
    assert (cfg.instrument.arf, cfg.instrument.rmf) == (arf, rmf)


def test_bundled_response_when_both_omitted_or_empty():
    for text in (MINIMAL, make(instrument='arf = ""\nrmf = ""')):
        inst = parse(text).instrument
        assert inst.bundled
        assert inst.arf.is_file() and inst.rmf.is_file()
        assert (inst.arf.name, inst.rmf.name) == ("pn.arf", "pn.rmf")


def test_only_one_of_arf_rmf_is_an_error(tmp_path):
    (tmp_path / "a.arf").write_bytes(b"")
    msg = error_of(make(instrument='arf = "a.arf"'), base_dir=tmp_path)
    assert "test.toml, key 'instrument.rmf'" in msg
    assert "both arf and rmf" in msg


def test_missing_response_file(tmp_path):
    msg = error_of(make(instrument='arf = "nope.arf"\nrmf = "nope.rmf"'), base_dir=tmp_path)
    assert "test.toml, key 'instrument.arf': no such file" in msg
    assert "'nope.arf'" in msg


def test_background_must_exist(tmp_path):
    msg = error_of(make(instrument='background = "bkg.pha"'), base_dir=tmp_path)
    assert "key 'instrument.background': no such file" in msg


# --------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path):
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: no such file") as info:
        load_config(missing)
    assert info.value.path == str(missing)
    assert isinstance(info.value, InputError)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_syntax_error_names_file_line_and_column(tmp_path):
    bad = write(tmp_path / "bad.toml", "[library]\nseed = 1\nengine = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: TOML syntax error: .*line 3, column \d+"):
        load_config(bad)


def test_not_utf8(tmp_path):
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.toml: not UTF-8"):
        load_config(bad)


# --------------------------------------------------------------------------- unknown / missing


def test_unknown_key_with_suggestion():
    msg = error_of(make(library="sead = 3"))
    assert msg == "test.toml, key 'library.sead': unknown key (did you mean 'seed'?)"


def test_all_unknown_keys_in_one_message():
    text = """
    [libary]
    seed = 1
    [instrument]
    exposre = 10.0
    [source]
    temperatures = { start = 1, stop = 2, num = 3, spcing = "log" }
    redshift = 0.1
    tolerance = 3
    [modifier.axes]
    mu = { start = 1, stop = 2, nmu = 3 }
    sigma = 1
    amp = 0
    [fit]
    nh = 0.1
    [extra]
    """
    msg = error_of(text)
    assert msg.startswith("test.toml: 7 unknown keys: ")
    for expected in (
        "'libary' (did you mean 'library'?)",
        "'instrument.exposre' (did you mean 'exposure'?)",
        "'source.temperatures.spcing' (did you mean 'spacing'?)",
        "'source.tolerance'",
        "'modifier.axes.mu.nmu' (did you mean 'num'?)",
        "'fit.nh' (did you mean 'source.nH'?)",
        "'extra'",
    ):
        assert expected in msg
    # reported in file order
    keys = re.findall(r"'([\w.]+)'(?: \(did you mean '[\w.]+'\?\))?(?:;|$)", msg)
    assert keys == [
        "libary",
        "instrument.exposre",
        "source.temperatures.spcing",
        "source.tolerance",
        "modifier.axes.mu.nmu",
        "fit.nh",
        "extra",
    ]


def test_key_in_the_wrong_section_is_pointed_to():
    msg = error_of(make(library="exposure = 1.0"))
    assert "key 'library.exposure': unknown key (did you mean 'instrument.exposure'?)" in msg


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[modifier.axes]\nmu = 1\nsigma = 1\namp = 0\n", "source.temperatures"),
        ("[source]\ntemperatures = [1.0]\n", "modifier.axes"),
        ("[source]\ntemperatures = [1.0]\n[modifier]\nfamily = 'gaussian'\n", "modifier.axes"),
    ],
)
def test_missing_required_key(text, key):
    assert error_of(text) == f"test.toml, key '{key}': missing required key"


def test_missing_required_keys_together():
    msg = error_of("[library]\nseed = 1\n")
    assert "'source.temperatures'" in msg and "'modifier.axes'" in msg


def test_section_must_be_a_table():
    msg = error_of("library = 5\n" + MINIMAL)
    assert "test.toml, key 'library': expected a table [library], got 5 (int)" in msg


# --------------------------------------------------------------------------- types and values


@pytest.mark.parametrize(
    ("section", "line", "key", "fragment"),
    [
        (
            "instrument",
            'exposure = "fifty"',
            "instrument.exposure",
            "expected a number, got 'fifty' (str)",
        ),
        (
            "instrument",
            "exposure = true",
            "instrument.exposure",
            "expected a number, got True (bool)",
        ),
        ("instrument", "exposure = 0", "instrument.exposure", "must be > 0, got 0"),
        ("instrument", "exposure = -5.0", "instrument.exposure", "must be > 0, got -5.0"),
        (
            "instrument",
            "exposure = nan",
            "instrument.exposure",
            "expected a finite number, got nan",
        ),
        (
            "instrument",
            "exposure = inf",
            "instrument.exposure",
            "expected a finite number, got inf",
        ),
        ("library", "seed = 1.5", "library.seed", "expected an integer, got 1.5 (float)"),
        ("library", "seed = 2.0", "library.seed", "expected an integer, got 2.0 (float)"),
        ("library", "seed = false", "library.seed", "expected an integer, got False (bool)"),
        ("library", "seed = -1", "library.seed", "must be >= 0, got -1"),
        ("library", "seed = 9223372036854775808", "library.seed", "must be < 9223372036854775808"),
        (
            "library",
            'engine = "fast"',
            "library.engine",
            "expected one of 'native', 'xspec', got 'fast'",
        ),
        ("library", 'noise = "gauss"', "library.noise", "expected one of 'poisson', 'asimov'"),
        ("library", "realizations = 0", "library.realizations", "must be >= 1, got 0"),
        ("library", 'output = ""', "library.output", "expected a file name"),
        ("library", "output = 3", "library.output", "expected a string, got 3 (int)"),
        ("instrument", "band = [10.0, 0.5]", "instrument.band", "needs lo < hi, got [10.0, 0.5]"),
        ("instrument", "band = [-1.0, 2.0]", "instrument.band[0]", "must be >= 0, got -1.0"),
        (
            "instrument",
            "band = [1.0]",
            "instrument.band",
            "expected a list [lo, hi] of two numbers",
        ),
        (
            "instrument",
            'band = [1.0, "x"]',
            "instrument.band[1]",
            "expected a number, got 'x' (str)",
        ),
        ("source", "nH = -0.1", "source.nH", "must be >= 0, got -0.1"),
        ("source", "redshift = -1", "source.redshift", "must be >= 0, got -1"),
        ("source", "abundance = '0.3'", "source.abundance", "expected a number, got '0.3' (str)"),
        ("source", "norm = 0.0", "source.norm", "must be > 0, got 0.0"),
        ("source", 'abundance_table = "solar"', "source.abundance_table", "got 'solar'"),
        ("source", 'cross_sections = "xyz"', "source.cross_sections", "'bcmc', 'obcm', 'vern'"),
        ("fit", 'statistic = "chi"', "fit.statistic", "expected one of 'cstat', got 'chi'"),
        ("fit", "error_delta = 0", "fit.error_delta", "must be > 0, got 0"),
        ("fit", "kt_limits = [0.0, 64.0]", "fit.kt_limits[0]", "must be > 0, got 0.0"),
        ("fit", "kt_limits = [5.0, 1.0]", "fit.kt_limits", "needs lo < hi"),
    ],
)
def test_bad_values_name_file_key_and_value(section, line, key, fragment):
    msg = error_of(make(**{section: line}))
    assert msg.startswith(f"test.toml, key '{key}': ")
    assert fragment in msg


def test_ints_are_accepted_for_floats():
    cfg = parse(make(instrument="exposure = 20000\nband = [0, 12]"))
    assert cfg.instrument.exposure == 20000.0
    assert isinstance(cfg.instrument.exposure, float)
    assert cfg.instrument.band == (0.0, 12.0)


def test_choices_are_normalised():
    cfg = parse(
        make(
            library='engine = " Native "\nnoise = "ASIMOV"',
            source='model = " TBabs * APEC "\nabundance_table = "Wilm"',
        )
    )
    assert (cfg.library.engine, cfg.library.noise) == ("native", "asimov")
    assert cfg.source.model == "tbabs*apec"
    assert (cfg.source.absorption, cfg.source.emission) == ("tbabs", "apec")
    assert not cfg.source.continuum_only
    assert cfg.source.abundance_table == "wilm"


@pytest.mark.parametrize("model", ["tbabs*mekal", "tbabs", "tbabs*zbremss*gauss", "apec*tbabs"])
def test_unsupported_model_lists_the_supported_ones(model):
    msg = error_of(make(source=f'model = "{model}"'))
    assert "test.toml, key 'source.model':" in msg and f"'{model}'" in msg
    if model != "apec*tbabs":
        for name in ("tbabs", "phabs", "wabs", "bremss", "zbremss", "apec"):
            assert name in msg


def test_zapec_is_refused_with_the_apec_hint():
    msg = error_of(make(source='model = "tbabs*zapec"'))
    assert "key 'source.model'" in msg and "no model 'zapec'" in msg and "tbabs*apec" in msg


@pytest.mark.parametrize(
    ("line", "got"), [("", "got 0.1, the default"), ("redshift = 0.2", "got 0.2)")]
)
def test_a_redshift_on_bremss_is_refused(line, got):
    """bremss has no redshift parameter: the config refuses one (before any engine runs)."""
    msg = error_of(make(source=f'model = "tbabs*bremss"\n{line}'))
    assert msg.startswith("test.toml, key 'source.redshift': bremss has no redshift (")
    assert got in msg and "use zbremss or set redshift = 0" in msg


def test_bremss_without_a_redshift_and_zbremss_with_one_are_fine():
    assert parse(make(source='model = "wabs*bremss"\nredshift = 0')).source.redshift == 0.0
    assert parse(make(source='model = "tbabs*zbremss"\nredshift = 0.3')).source.redshift == 0.3


def test_engines_come_from_the_registry():
    """A config names the engines of xrmod.engines.ENGINES, not those for checks only."""
    from xrmod.engines import ENGINES

    assert ENGINES["reference"].check_only
    msg = error_of(make(library='engine = "reference"'))
    assert "key 'library.engine': expected one of 'native', 'xspec', got 'reference'" in msg
    assert parse(make(library='engine = "xspec"')).library.engine == "xspec"


@pytest.mark.parametrize("band", ["[100.0, 200.0]", "[0.0, 0.1]"])
def test_a_band_without_channels_is_refused_when_the_job_is_loaded(band):
    """Named with the response's channel range, before any engine (not a shape error later)."""
    from xrmod.job import job_from_config

    cfg = parse(make(instrument=f"band = {band}"))
    with pytest.raises(ConfigError) as info:
        job_from_config(cfg)
    assert info.value.key == "instrument.band" and info.value.path == "test.toml"
    lo, hi = (float(v) for v in band.strip("[]").split(","))
    assert f"the band {lo:g}-{hi:g} keV selects no channel" in info.value.message
    assert "the channels of the RMF cover 0.303906-20.48 keV" in info.value.message
    assert "pn.rmf" in info.value.message


def test_asimov_with_several_realizations_is_refused():
    msg = error_of(make(library='noise = "asimov"\nrealizations = 3'))
    assert "key 'library.realizations'" in msg and "identical" in msg


def test_realizations_add_an_axis_before_the_temperatures():
    cfg = parse(make(library="realizations = 4"))
    assert cfg.grid_shape == (1, 1, 1, 4, 2)
    assert cfg.n_points == 8


# --------------------------------------------------------------------------- grid errors


@pytest.mark.parametrize(
    ("mu", "key", "fragment"),
    [
        ("[]", "modifier.axes.mu", "empty list"),
        ("{ start = 1, stop = 2, num = 0 }", "modifier.axes.mu.num", "must be >= 1, got 0"),
        ("{ start = 1, stop = 2, num = 2.0 }", "modifier.axes.mu.num", "expected an integer"),
        ("{ start = 1, stop = 2 }", "modifier.axes.mu", "missing num"),
        (
            '{ start = 1, stop = 2, num = 3, spacing = "cubic" }',
            "modifier.axes.mu.spacing",
            "got 'cubic'",
        ),
        (
            '{ start = 0, stop = 2, num = 3, spacing = "log" }',
            "modifier.axes.mu",
            "log spacing needs",
        ),
        ("{ start = 1, stop = 1, num = 3 }", "modifier.axes.mu", "duplicate value 1"),
        ("[1.0, 2.0, 1.0]", "modifier.axes.mu", "duplicate value 1"),
        ('[1.0, "two"]', "modifier.axes.mu[1]", "expected a number, got 'two' (str)"),
        ('"wide"', "modifier.axes.mu", "expected a number, a list of numbers or a table"),
        ("{ start = 1, stop = 2, num = 10000000 }", "modifier.axes.mu.num", "at most"),
    ],
)
def test_axis_errors_name_the_axis(mu, key, fragment):
    msg = error_of(axes_doc(mu))
    assert msg.startswith(f"test.toml, key '{key}': ")
    assert fragment in msg


@pytest.mark.parametrize(
    ("temperatures", "fragment"),
    [
        ("[]", "empty list"),
        ("[1.0, -2.0]", "every value must be > 0, got -2"),
        ("[0.0, 2.0]", "every value must be > 0, got 0"),
        ("[2.0, 2.0]", "duplicate value 2"),
        ("[1.0, 100.0]", "temperature 100 keV is not strictly inside fit.kt_limits [0.05, 64]"),
        ("[64.0]", "not strictly inside"),
    ],
)
def test_temperature_errors(temperatures, fragment):
    msg = error_of(axes_doc("3.0", temperatures=temperatures))
    assert msg.startswith("test.toml, key 'source.temperatures': ")
    assert fragment in msg


def test_temperatures_checked_against_custom_kt_limits():
    text = axes_doc("3.0", temperatures="[1.0, 5.0]") + "[fit]\nkt_limits = [0.5, 4.0]\n"
    assert "5 keV is not strictly inside fit.kt_limits [0.5, 4]" in error_of(text)


def test_axes_must_be_a_table():
    msg = error_of("[source]\ntemperatures = [1.0]\n[modifier]\naxes = [1, 2]\n")
    assert msg.startswith("test.toml, key 'modifier.axes': expected a table of axes")


def test_empty_axes_table():
    msg = error_of("[source]\ntemperatures = [1.0]\n[modifier.axes]\n")
    assert msg.startswith("test.toml, key 'modifier.axes': no axes")


# --------------------------------------------------------------------------- modifier family


def test_unknown_family_becomes_config_error():
    msg = error_of(make(modifier='family = "wobble"'))
    assert msg.startswith("test.toml, key 'modifier.family': ")
    assert "wobble" in msg


def test_family_rejects_unknown_axis():
    text = (
        "[source]\ntemperatures = [1.0]\n[modifier.axes]\nmu = 1\nsigma = 1\namp = 0\nwidth = 2\n"
    )
    msg = error_of(text)
    assert msg.startswith("test.toml, key 'modifier.axes': ")
    assert "width" in msg


def test_family_rejects_missing_axis():
    msg = error_of("[source]\ntemperatures = [1.0]\n[modifier.axes]\nmu = 1\namp = 0\n")
    assert msg.startswith("test.toml, key 'modifier.axes': ")
    assert "sigma" in msg


def test_family_checks_the_domain():
    msg = error_of(
        "[source]\ntemperatures = [1.0]\n[modifier.axes]\nmu = 1\nsigma = [0, 1]\namp = 0\n"
    )
    assert msg.startswith("test.toml, key 'modifier.axes': ")
    assert "sigma" in msg


def test_modifier_error_is_chained():
    with pytest.raises(ConfigError) as info:
        parse("[source]\ntemperatures = [1.0]\n[modifier.axes]\nmu = 1\namp = 0\n")
    assert isinstance(info.value.__cause__, ModifierError)
    assert info.value.key == "modifier.axes"


# --------------------------------------------------------------------------- immutability


def test_objects_are_frozen():
    cfg = load_config()
    for obj, field in [
        (cfg, "text"),
        (cfg.library, "seed"),
        (cfg.instrument, "exposure"),
        (cfg.source, "temperatures"),
        (cfg.modifier, "axes"),
        (cfg.fit, "error_delta"),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)


def test_arrays_are_read_only():
    cfg = load_config()
    arrays = [cfg.source.temperatures, *(values for _, values in cfg.modifier.axes)]
    for array in arrays:
        assert not array.flags.writeable
        with pytest.raises(ValueError, match=re.escape("read-only")):
            array[0] = 0.0
    assert isinstance(cfg.modifier.axes, tuple)


def test_direct_construction_copies_and_freezes_arrays():
    values = np.array([1.0, 2.0])
    modifier = cfgmod.ModifierConfig(family="gaussian", axes=(("mu", values),))
    values[0] = 5.0
    assert modifier.axes[0][1][0] == 1.0
    assert not modifier.axes[0][1].flags.writeable


def test_import_does_no_work():
    # Importing xrmod.config reads no file: the embedded default is parsed only on demand.
    code = (
        "import pathlib\n"
        "opened = []\n"
        "real = pathlib.Path.read_text\n"
        "def spy(self, *a, **k):\n"
        "    opened.append(str(self))\n"
        "    return real(self, *a, **k)\n"
        "pathlib.Path.read_text = spy\n"
        "import xrmod.config\n"
        "print([p for p in opened if p.endswith('.toml')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
