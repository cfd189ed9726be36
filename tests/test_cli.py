"""The command line: bad input gives one message naming the problem and exit code 2."""

import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xrmod.responses import write_arf

BUNDLED_ARF = str(files("xrmod") / "data" / "pn.arf")
BUNDLED_RMF = str(files("xrmod") / "data" / "pn.rmf")

GOOD = """\
[library]
output = "{out}"
[instrument]
arf = "{arf}"
rmf = "{rmf}"
[source]
temperatures = [2.0, 4.0]
[modifier]
family = "gaussian"
[modifier.axes]
mu = [1.0, 2.0]
sigma = 0.5
amp = [-0.1, 0.1]
"""


def _exe(name):
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: is xrmod installed?"
    return path


def _run(*args, cwd=None):
    return subprocess.run(
        [_exe(args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _config(tmp_path, text=None, **subs):
    values = {"out": str(tmp_path / "lib.h5"), "arf": BUNDLED_ARF, "rmf": BUNDLED_RMF}
    values.update(subs)
    path = tmp_path / "config.toml"
    path.write_text((text or GOOD).format(**values))
    return path


def _assert_input_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], proc.stderr


def test_check_accepts_a_good_config(tmp_path):
    cfg = _config(tmp_path)
    proc = _run("xrmod-gen", str(cfg), "--check")
    assert proc.returncode == 0, proc.stderr
    assert "8 points" in proc.stderr
    assert not (tmp_path / "lib.h5").exists()


def test_unknown_key(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("[library]\n", "[library]\nsead = 3\n"))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(cfg), "library.sead", "seed")


def test_wrong_type(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("[instrument]\n", '[instrument]\nexposure = "fifty"\n'))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(cfg), "instrument.exposure", "fifty")


def test_empty_axis(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("mu = [1.0, 2.0]", "mu = []"))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(cfg), "mu")


def test_missing_fits_file(tmp_path):
    missing = tmp_path / "nope.arf"
    cfg = _config(tmp_path, arf=str(missing))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(missing))


def test_corrupt_fits_file(tmp_path):
    broken = tmp_path / "broken.rmf"
    broken.write_bytes(Path(BUNDLED_RMF).read_bytes()[:20000])  # truncated
    cfg = _config(tmp_path, rmf=str(broken))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(broken))


def test_mismatched_arf_and_rmf(tmp_path):
    with fits.open(BUNDLED_ARF) as hdul:
        data = hdul["SPECRESP"].data
        columns = ("ENERG_LO", "ENERG_HI", "SPECRESP")
        lo, hi, area = (np.array(data[c], dtype=np.float64) for c in columns)
    other = tmp_path / "short.arf"
    write_arf(other, lo[:-5], hi[:-5], area[:-5])
    cfg = _config(tmp_path, arf=str(other))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(other), BUNDLED_RMF)


def test_missing_config_file(tmp_path):
    _assert_input_error(_run("xrmod-gen", str(tmp_path / "absent.toml")), "absent.toml")


def test_debug_shows_the_traceback(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("[library]\n", "[library]\nsead = 3\n"))
    proc = _run("xrmod-gen", str(cfg), "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_init_writes_a_template_that_validates(tmp_path):
    target = tmp_path / "mine.toml"
    proc = _run("xrmod", "init", str(target))
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    assert text.count("#") > 20  # commented
    proc = _run("xrmod", "validate", str(target))
    assert proc.returncode == 0, proc.stderr
    assert "modifier:" in proc.stdout
    again = _run("xrmod", "init", str(target))
    assert again.returncode == 2 and "exists" in again.stderr
    assert target.read_text() == text


@pytest.mark.parametrize("command", [("xrmod-gen", "--version"), ("xrmod", "--version")])
def test_version(command):
    proc = _run(*command)
    assert proc.returncode == 0 and proc.stdout.strip()


# --------------------------------------------------------------------------- init


def test_init_refuses_to_replace_a_file_like_any_input_error(tmp_path):
    from xrmod.cli import main
    from xrmod.errors import InputError

    target = tmp_path / "mine.toml"
    target.write_text("# mine\n")
    _assert_input_error(_run("xrmod", "init", str(target)), "xrmod init: error:", str(target))
    with pytest.raises(InputError, match="exists; use --force"):  # raised, not printed
        main(["init", str(target), "--debug"])
    assert target.read_text() == "# mine\n"
    assert _run("xrmod", "init", str(target), "--force").returncode == 0
    assert target.read_text() != "# mine\n"
    missing = tmp_path / "no" / "such" / "dir.toml"
    _assert_input_error(_run("xrmod", "init", str(missing)), "cannot write", str(missing))


def _template_lines(section):
    """The comment lines of *section* in the template, up to its first key."""
    from xrmod.config import template_text

    lines = template_text().splitlines()
    start = lines.index(f"[{section}]") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line)
    return block


def _names(listing):
    """``"tbabs (nH), apec (kT, Abundanc)"`` -> ``["tbabs", "apec"]``."""
    import re

    return re.sub(r"\s*\([^)]*\)", "", listing).split(", ")


def test_the_template_offers_exactly_the_registered_models():
    from xrmod.config import parse_config, template_text
    from xrmod.models import ABSORBERS, EMISSIONS

    block = _template_lines("source")
    (absorbers,) = [line.split("ABS", 1)[1].strip() for line in block if "#   ABS " in line]
    (emissions,) = [line.split("EMIS", 1)[1].strip() for line in block if "#   EMIS " in line]
    assert _names(absorbers) == list(ABSORBERS)
    assert _names(emissions) == list(EMISSIONS)
    assert "zapec" not in template_text()  # XSPEC has no such model (the config says so)
    for absorber in _names(absorbers):
        for emission in _names(emissions):
            text = f'[source]\nmodel = "{absorber}*{emission}"\nredshift = 0.0\n'
            text += "temperatures = 2.0\n[modifier.axes]\nmu = 1.0\nsigma = 0.5\namp = 0.1\n"
            cfg = parse_config(text)
            assert cfg.source.model == f"{absorber}*{emission}"


def test_the_template_offers_exactly_the_registered_families():
    import itertools
    import re

    from xrmod.config import parse_config
    from xrmod.modifiers import families, get_family

    block = _template_lines("modifier")
    listed = {}
    for line, following in itertools.pairwise(block):
        match = re.match(r"#   ([a-z]+) {2,}(\S.*)$", line)
        if match and "A'(E) = " in following:
            listed[match[1]] = (_names(match[2]), following.split("A'(E) = ", 1)[1])
    assert sorted(listed) == list(families())
    for name, (parameters, formula) in listed.items():
        family = get_family(name)
        assert parameters == list(family.parameters), name
        assert f"A'(E) = {formula}" == family.formula
        axes = "".join(f"{p} = 1.0\n" for p in parameters)
        text = f'[source]\ntemperatures = 2.0\n[modifier]\nfamily = "{name}"\n'
        cfg = parse_config(text + f"[modifier.axes]\n{axes}")
        assert cfg.modifier.family == name and cfg.modifier.names == family.parameters


# --------------------------------------------------------------------------- info


def _small_library(path):
    from xrmod.grid import Grid
    from xrmod.library import create_library

    grid = Grid(
        axes=(("mu", np.array([1.0, 2.5, 4.0])), ("sigma", np.array([0.5]))),
        temperatures=np.array([2.0, 8.0]),
    )
    create_library(
        path,
        grid,
        family="gaussian",
        units={"mu": "keV", "sigma": "keV"},
        attrs={
            "band": [0.5, 10.0],
            "exposure": 50000.0,
            "error_delta": 2.706,
            "seed": 20261127,
            "arf": "/data/run/../pn.arf",
            "rmf": "/data//pn.rmf",
            "background": "",
            "background_sha256": "",
            "config_path": "./runs/cfg.toml",
            "config": "[library]\nseed = 20261127\n\n[source]\n",
        },
    )
    return path


def test_info_prints_plain_numbers_and_normalised_paths(tmp_path, capsys):
    from xrmod.cli import main

    lib = _small_library(tmp_path / "lib.h5")
    assert main(["info", str(tmp_path / "." / "lib.h5")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == str(lib)
    for expected in (
        "  band: 0.5–10 keV",
        "  exposure: 50000 s",
        "  error_delta: 2.706",
        "  seed: 20261127",
        "  arf: /data/pn.arf",
        "  rmf: /data/pn.rmf",
        "  background: none",
        "  background_sha256: none",
        "  config_path: runs/cfg.toml",
        "    mu: 3 values 1 .. 4 keV",
        "    sigma: 0.5 keV",  # a one-value axis: its value
        "    temps: 2 values 2 .. 8 keV",
    ):
        assert expected in lines, f"{expected!r} not in\n{out}"
    provenance = lines[1 : lines.index("  axes (in order):")]  # no numpy array anywhere
    assert not [line for line in provenance if "[" in line or "  " in line.strip()], out
    config = lines[lines.index("  config:") + 1 :]
    assert config == ["    [library]", "    seed = 20261127", "", "    [source]"]


def test_info_into_a_closed_pipe_ends_quietly(tmp_path):
    """``xrmod info LIB | head``: no "internal error: BrokenPipeError", exit 141 (SIGPIPE)."""
    import os

    from xrmod.errors import EXIT_SIGPIPE

    lib = _small_library(tmp_path / "lib.h5")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before xrmod writes: every write fails
    try:
        proc = subprocess.run(
            [_exe("xrmod"), "info", str(lib)], stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)
    assert proc.returncode == EXIT_SIGPIPE == 141
    assert proc.stderr == b""
    # as a shell runs it: the first lines, nothing on stderr
    shell = subprocess.run(
        ["bash", "-c", f"'{_exe('xrmod')}' info '{lib}' | head -n 2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.stdout.splitlines() == [str(lib), "  arf: /data/pn.arf"]
    assert shell.stderr == ""
