"""The observations CSV of ``xrmod infer``: what a good file gives, and every bad one refused.

Each problem is an :class:`xrmod.errors.InputError` whose message names the
file, the line (counted in the real file: comments and blank lines too) and
the problem; through the command line it is one ``xrmod infer: error:``
line on stderr and exit code 2.
"""

import shutil
import subprocess

import numpy as np
import pytest
from scipy.stats import norm

from xrmod.analysis.observations import Observations, parse_band, read_observations
from xrmod.errors import InputError

# the two-sided Gaussian quantile of the default confidence (0.6827): 1σ, almost exactly
ONE_SIGMA = norm.ppf(0.5 + 0.6827 / 2)


def _write(tmp_path, text, name="obs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refused(tmp_path, text, *fragments, **options):
    """Read *text* as a file; assert an InputError naming the file and every fragment."""
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_observations(path, **options)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- good files


def test_symmetric_errors(tmp_path):
    path = _write(
        tmp_path,
        "name,T_ref,T_ref_err,T_obs,T_obs_err\n"
        "A2029,7.9,0.3,7.1,0.4\n"
        "Coma,8.2,0.2,7.5,0.25\n"
        "Virgo,2.3,0.05,2.2,0.1\n",
    )
    obs = read_observations(path)
    assert isinstance(obs, Observations)
    assert len(obs) == 3
    assert obs.path == str(path)
    assert obs.names == ("A2029", "Coma", "Virgo")
    np.testing.assert_array_equal(obs.T_ref, [7.9, 8.2, 2.3])
    np.testing.assert_array_equal(obs.T_obs, [7.1, 7.5, 2.2])
    np.testing.assert_allclose(obs.sigma_lo, np.array([0.4, 0.25, 0.1]) / ONE_SIGMA, rtol=1e-12)
    np.testing.assert_array_equal(obs.sigma_hi, obs.sigma_lo)
    np.testing.assert_allclose(obs.T_ref_err, np.array([0.3, 0.2, 0.05]) / ONE_SIGMA, rtol=1e-12)
    np.testing.assert_allclose(obs.sigma_lo, [0.4, 0.25, 0.1], rtol=1e-4)  # 0.6827 is 1σ
    assert obs.lines == (2, 3, 4)
    assert not obs.has_bands
    assert np.isnan(obs.band).all() and obs.band.shape == (3, 2)
    assert obs.label(1) == f"{path}, line 3 (Coma)"


def test_columns_in_any_order_with_spaces_and_no_T_ref_err(tmp_path):
    path = _write(tmp_path, " T_obs_err , T_obs ,T_ref\n 0.5 , 3.0 ,3.2\n")
    obs = read_observations(path)
    np.testing.assert_array_equal(obs.T_ref, [3.2])
    np.testing.assert_array_equal(obs.T_obs, [3.0])
    np.testing.assert_allclose(obs.sigma_lo, [0.5 / ONE_SIGMA], rtol=1e-12)
    np.testing.assert_array_equal(obs.T_ref_err, [0.0])


def test_bounds_give_asymmetric_errors(tmp_path):
    path = _write(
        tmp_path,
        "T_ref,T_obs,T_obs_lo,T_obs_hi\n5.0,4.6,4.1,5.3\n3.0,2.9,2.8,3.4\n",
    )
    obs = read_observations(path)
    np.testing.assert_allclose(obs.sigma_lo, np.array([0.5, 0.1]) / ONE_SIGMA, rtol=1e-12)
    np.testing.assert_allclose(obs.sigma_hi, np.array([0.7, 0.5]) / ONE_SIGMA, rtol=1e-12)
    np.testing.assert_array_equal(obs.T_obs, [4.6, 2.9])


def test_confidence_090_divides_by_1645(tmp_path):
    path = _write(
        tmp_path,
        "T_ref,T_ref_err,T_obs,T_obs_lo,T_obs_hi\n5.0,0.2,4.6,4.1,5.3\n",
    )
    z = norm.ppf(0.95)
    assert z == pytest.approx(1.6449, abs=1e-4)
    obs = read_observations(path, confidence=0.9)
    np.testing.assert_allclose(obs.sigma_lo, [0.5 / z], rtol=1e-12)
    np.testing.assert_allclose(obs.sigma_hi, [0.7 / z], rtol=1e-12)
    np.testing.assert_allclose(obs.T_ref_err, [0.2 / z], rtol=1e-12)
    np.testing.assert_array_equal(obs.T_obs, [4.6])  # the value itself is not scaled
    symmetric = _write(tmp_path, "T_ref,T_obs,T_obs_err\n5.0,4.6,0.8\n", "sym.csv")
    obs = read_observations(symmetric, confidence=0.9)
    np.testing.assert_allclose(obs.sigma_lo, [0.8 / z], rtol=1e-12)
    np.testing.assert_allclose(obs.sigma_hi, [0.8 / z], rtol=1e-12)


def test_comments_blank_lines_and_real_line_numbers(tmp_path):
    text = (
        "# clusters, keV\n"  # 1
        "\n"  # 2
        "T_ref,T_obs,T_obs_err,name\n"  # 3
        "  # an indented comment\n"  # 4
        "5.0,4.6,0.3,\n"  # 5
        "\n"  # 6
        "   \n"  # 7
        "6.0,5.5,0.3,Perseus\n"  # 8
        "# 9.0,8.0,0.3,commented out\n"  # 9
        "7.0,6.1,0.4,\n"  # 10
    )
    obs = read_observations(_write(tmp_path, text))
    assert obs.lines == (5, 8, 10)
    assert obs.names == ("row 1", "Perseus", "row 3")  # rows counted, not lines
    np.testing.assert_array_equal(obs.T_ref, [5.0, 6.0, 7.0])
    # a bad value after the comments is reported at its line in the file
    bad = text.replace("7.0,6.1,0.4,", "7.0,6.1,oops,")
    _refused(tmp_path, bad, "line 10", "T_obs_err", "'oops'", "not a number")


def test_windows_line_endings_and_byte_order_mark(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_bytes(b"\xef\xbb\xbfT_ref,T_obs,T_obs_err\r\n# c\r\n5.0,4.6,0.3\r\n")
    obs = read_observations(path)
    np.testing.assert_array_equal(obs.T_ref, [5.0])
    assert obs.lines == (3,)


def test_quoted_name_with_a_comma(tmp_path):
    obs = read_observations(_write(tmp_path, 'name,T_ref,T_obs,T_obs_err\n"A, B",5,4.6,0.3\n'))
    assert obs.names == ("A, B",)


def test_band_column(tmp_path):
    path = _write(
        tmp_path,
        "name,band,T_ref,T_obs,T_obs_err\n"
        "a,0.5-10,5.0,4.6,0.3\n"
        "b,2:7,5.0,4.6,0.3\n"
        "c,0.5–10 keV,5.0,4.6,0.3\n"
        "d, 0.3 - 2.5 ,5.0,4.6,0.3\n",
    )
    obs = read_observations(path)
    assert obs.has_bands
    np.testing.assert_array_equal(obs.band, [[0.5, 10.0], [2.0, 7.0], [0.5, 10.0], [0.3, 2.5]])
    part = obs.subset(np.array([False, True, False, True]))
    assert part.names == ("b", "d")
    assert part.lines == (3, 5)
    np.testing.assert_array_equal(part.band, [[2.0, 7.0], [0.3, 2.5]])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5-10", (0.5, 10.0)), ("2:7", (2.0, 7.0)), ("0.5–10 keV", (0.5, 10.0)), ("0-2", (0, 2))],
)
def test_parse_band(text, expected):
    assert parse_band(text, "here") == expected


# ---------------------------------------------------------------- bad files

GOOD_HEADER = "T_ref,T_obs,T_obs_err\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("T_obs,T_obs_err\n4.6,0.3\n", ["no T_ref column", "found: T_obs, T_obs_err"]),
        ("T_ref,T_obs_err\n5,0.3\n", ["no T_obs column"]),
        ("T_ref,T_obs\n5,4.6\n", ["no T_obs_err column", "T_obs_lo and T_obs_hi"]),
        ("T_ref,T_obs,T_obs_lo\n5,4.6,4\n", ["no T_obs_hi column"]),
        ("T_ref,T_obs,T_obs_hi\n5,4.6,5\n", ["no T_obs_lo column"]),
        (
            "T_ref,T_obs,T_obs_err,T_obs_lo,T_obs_hi\n5,4.6,0.3,4,5\n",
            ["T_obs_err or T_obs_lo and T_obs_hi, not both"],
        ),
        (
            "T_ref,T_obs,T_obs_error\n5,4.6,0.3\n",
            [
                "unknown column 'T_obs_error' (did you mean 'T_obs_err'?",
                "name, band, T_ref, T_ref_err, T_obs, T_obs_err, T_obs_lo",
            ],
        ),
        ("T_ref,T_obs,T_obs_err,T_obs\n5,4.6,0.3,4\n", ["column 'T_obs' appears twice"]),
    ],
    ids=[
        "no T_ref",
        "no T_obs",
        "no error",
        "only lo",
        "only hi",
        "err and bounds",
        "unknown",
        "duplicate",
    ],
)
def test_column_problems(tmp_path, text, fragments):
    _refused(tmp_path, text, *fragments)


@pytest.mark.parametrize(
    "text",
    [
        "# comment\n\nT_obs,T_obs_err\n4.6,0.3\n",
        "# comment\n\nT_ref,T_obs,T_obs_lo\n5,4.6,4\n",
        "# comment\n\nT_ref,T_obs,T_obs_err,T_ref_error\n5,4.6,0.3,1\n",
        "# comment\n\nT_ref,T_obs,T_obs_err,T_obs\n5,4.6,0.3,4\n",
    ],
    ids=["missing", "one bound", "unknown", "duplicate"],
)
def test_column_problems_name_the_header_line(tmp_path, text):
    """The module promises that every problem names the line: the header's is line 3 here."""
    _refused(tmp_path, text, "line 3")


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        ("5,four,0.3", ["line 2", "T_obs 'four' is not a number"]),
        ("5,4.6,", ["line 2", "T_obs_err '' is not a number"]),
        ("nan,4.6,0.3", ["line 2", "T_ref is nan"]),
        ("5,inf,0.3", ["line 2", "T_obs is inf"]),
        ("5,4.6,-inf", ["line 2", "T_obs_err is -inf"]),
        ("0,4.6,0.3", ["line 2 (row 1)", "T_ref = 0 must be positive"]),
        ("-5,4.6,0.3", ["line 2 (row 1)", "T_ref = -5 must be positive"]),
        ("5,0,0.3", ["line 2 (row 1)", "T_obs = 0 must be positive"]),
        ("5,-1,0.3", ["line 2 (row 1)", "T_obs = -1 must be positive"]),
        ("5,4.6,0", ["line 2 (row 1)", "T_obs_err = 0 must be positive"]),
        ("5,4.6,-0.3", ["line 2 (row 1)", "T_obs_err = -0.3 must be positive"]),
        ("5,4.6,0.3,7", ["line 2", "4 fields, the header has 3"]),
        ("5,4.6", ["line 2", "2 fields, the header has 3"]),
    ],
)
def test_bad_values(tmp_path, row, fragments):
    _refused(tmp_path, GOOD_HEADER + row + "\n", *fragments)


def test_the_first_bad_row_is_named(tmp_path):
    text = "name,T_ref,T_obs,T_obs_err\na,5,4.6,0.3\nb,5,4.6,0.3\nc,5,-4.6,0.3\nd,5,0,0.3\n"
    message = _refused(tmp_path, text, "line 4 (c)", "T_obs = -4.6")
    assert "line 5" not in message


def test_negative_T_ref_err(tmp_path):
    text = "T_ref,T_ref_err,T_obs,T_obs_err\n5,0.1,4.6,0.3\n5,-0.5,4.6,0.3\n"
    _refused(tmp_path, text, "line 3 (row 2)", "T_ref_err = -0.", "must not be negative")


@pytest.mark.parametrize("confidence", [0.6827, 0.9])
def test_negative_T_ref_err_message_shows_the_files_value(tmp_path, confidence):
    """The message quotes the file's -0.5, not -0.5 / 0.99998 or -0.5 / 1.645 = -0.304."""
    text = "T_ref,T_ref_err,T_obs,T_obs_err\n5,-0.5,4.6,0.3\n"
    _refused(tmp_path, text, "line 2", "T_ref_err = -0.5 must", confidence=confidence)


@pytest.mark.parametrize(
    ("bounds", "fragments"),
    [
        ("0.5,0.6", ["T_obs_hi = 0.6 must be above T_obs", "bounds, not error bars"]),
        ("5.5,6.0", ["T_obs_lo = 5.5 must be below T_obs", "bounds, not error bars"]),
        ("4.6,5.0", ["T_obs_lo = 4.6 must be below T_obs"]),
        ("4.0,4.6", ["T_obs_hi = 4.6 must be above T_obs"]),
        ("5.0,4.0", ["T_obs_lo = 5 must be below T_obs"]),
    ],
    ids=["error bars", "both above", "lo at T_obs", "hi at T_obs", "swapped"],
)
def test_bounds_on_the_wrong_side(tmp_path, bounds, fragments):
    text = f"# bounds\nT_ref,T_obs,T_obs_lo,T_obs_hi\n5.0,4.6,4.1,5.2\n5.0,4.6,{bounds}\n"
    _refused(tmp_path, text, "line 4 (row 2)", *fragments)


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# only comments\n\n  # more\n"],
    ids=["empty", "blank lines", "comments"],
)
def test_empty_file(tmp_path, text):
    _refused(tmp_path, text, "empty", "header")


def test_header_only(tmp_path):
    _refused(tmp_path, "# c\nT_ref,T_obs,T_obs_err\n\n# nothing\n", "no observations")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(InputError, match=r"nowhere\.csv: cannot read the observations") as info:
        read_observations(path)
    assert "No such file" in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(InputError, match="cannot read the observations") as info:
        read_observations(tmp_path)
    assert str(info.value).startswith(str(tmp_path))


def test_not_utf8(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_bytes(b"T_ref,T_obs,T_obs_err\n5,4.6,0.3\xff\n")
    with pytest.raises(InputError, match=r"obs\.csv: cannot read the observations"):
        read_observations(path)


def test_quoted_newline_is_an_input_error(tmp_path):
    """A quoted field running over two lines is an InputError naming the line, not a crash."""
    text = 'name,T_ref,T_obs,T_obs_err\n"Abell\n2029",5,4.6,0.3\n6,5.5,0.3,x\n'
    _refused(tmp_path, text, "line 2")


@pytest.mark.parametrize(
    ("band", "fragments"),
    [
        ("5", ["band '5' is not LO-HI in keV"]),
        ("", ["band '' is not LO-HI"]),
        ("a-b", ["band 'a-b' is not LO-HI"]),
        ("1-2-3", ["band '1-2-3' is not LO-HI"]),
        ("10-0.5", ["band '10-0.5' needs 0 <= LO < HI"]),
        ("2-2", ["band '2-2' needs 0 <= LO < HI"]),
    ],
)
def test_bad_band(tmp_path, band, fragments):
    text = f"T_ref,T_obs,T_obs_err,band\n5,4.6,0.3,0.5-10\n5,4.6,0.3,{band}\n"
    _refused(tmp_path, text, "line 3", *fragments)


def test_negative_band_edge_refused(tmp_path):
    """ "-1-5" has LO = -1: refused, not read as 1-5."""
    text = "T_ref,T_obs,T_obs_err,band\n5,4.6,0.3,-1-5\n"
    _refused(tmp_path, text, "line 2", "band '-1-5'")


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, 68.3, float("nan")])
def test_confidence_outside_0_1(tmp_path, confidence):
    path = _write(tmp_path, GOOD_HEADER + "5,4.6,0.3\n")
    with pytest.raises(InputError, match="confidence must be between 0 and 1") as info:
        read_observations(path, confidence=confidence)
    assert f"got {confidence}" in str(info.value)


# ---------------------------------------------------------------- the command line

LIBRARY = """\
[library]
output = "{out}"
noise = "asimov"
[instrument]
exposure = 20000.0
[source]
temperatures = [2.0, 4.0, 8.0]
[modifier]
family = "gaussian"
[modifier.axes]
mu = [1.0, 3.0]
sigma = [0.3, 0.8]
amp = [-0.1, 0.1]
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A tiny Asimov library (native engine): 2 x 2 x 2 θ x 3 temperatures."""
    from xrmod import driver

    tmp = tmp_path_factory.mktemp("obs_library")
    cfg = tmp / "lib.toml"
    out = tmp / "lib.h5"
    cfg.write_text(LIBRARY.format(out=out))
    assert driver.generate(cfg, progress=False) == 0
    return out


def _xrmod(*args):
    exe = shutil.which("xrmod")
    assert exe, "xrmod is not on PATH: is xrmod installed?"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


def _one_error_line(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("xrmod infer: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "# c\nT_ref,T_obs,T_obs_err\n5,4.6,0.3\n5,x,0.3\n",
            ["line 4", "T_obs 'x' is not a number"],
        ),
        ("T_ref,T_obs,T_obs_lo,T_obs_hi\n5,4.6,0.4,0.5\n", ["line 2", "bounds, not error bars"]),
        ("T_ref,T_obs\n5,4.6\n", ["no T_obs_err column"]),
    ],
    ids=["not a number", "error bars as bounds", "no error"],
)
def test_cli_bad_csv(tmp_path, library, text, fragments):
    csv = _write(tmp_path, text, "bad.csv")
    _one_error_line(_xrmod("infer", str(library), str(csv)), str(csv), *fragments)


def test_cli_missing_csv(tmp_path, library):
    missing = tmp_path / "missing.csv"
    _one_error_line(
        _xrmod("infer", str(library), str(missing)), str(missing), "cannot read the observations"
    )


def test_cli_bad_confidence(tmp_path, library):
    csv = _write(tmp_path, GOOD_HEADER + "5,4.6,0.3\n")
    proc = _xrmod("infer", str(library), str(csv), "--confidence", "90")
    _one_error_line(proc, "confidence must be between 0 and 1 (got 90.0)")


def test_library_is_usable(library):
    """The CLI tests' library is a real one: their errors come from the CSV, not from it."""
    from xrmod.analysis.emulator import Emulator

    emulator = Emulator.from_library(library, accuracy=False)
    assert emulator.parameters == ("mu", "sigma", "amp")


def test_other_columns_are_ignored_and_names_match_in_any_case(tmp_path, caplog):
    import logging

    path = _write(tmp_path, "ID,t_ref,T_OBS,T_obs_err,exposure_ks\nA,5,4.6,0.3,40\n")
    with caplog.at_level(logging.WARNING):
        obs = read_observations(path)
    assert obs.T_ref.tolist() == [5.0] and obs.T_obs.tolist() == [4.6]
    assert "ignoring column(s) 'ID', 'exposure_ks'" in caplog.text
