"""The README's two commands are what CI runs: keep them where .ci/run finds them."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    return [line[2:] for line in (ROOT / "README.md").read_text().splitlines() if line[:2] == "$ "]


def test_readme_starts_with_run_and_test_commands():
    run, test = _commands()[:2]
    assert run.startswith("pip install .") and run.endswith("xrmod-gen")
    assert "pip install" in test and "pytest" in test


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sed -n 's/^\\$ //p' README.md | sed -n 2p" in ci  # the test command
    assert "sed -n 's/^\\$ //p' README.md | sed -n 1p" in ci  # the default job
    assert "mpirun -n 2" in ci
    assert "apt-get update" in ci


def test_worked_example_is_a_valid_config(tmp_path):
    import re

    from xrmod.job import load_job

    text = (ROOT / "README.md").read_text()
    example = re.search(r"```toml\n(# edge.toml\n.*?)```", text, re.S).group(1)
    path = tmp_path / "edge.toml"
    path.write_text(example)
    job = load_job(path)
    assert job.grid.axis_names == ("energy", "depth", "width")
    claimed = re.search(r"= (\d+) points", text).group(1)
    assert job.grid.size == int(claimed)
    assert job.config.fit.error_delta == 2.706


def test_template_documents_every_family():
    from xrmod.config import template_text
    from xrmod.modifiers import families, get_family

    template = template_text()
    for name in families():
        assert get_family(name).formula.split("= ", 1)[1] in template, name


def test_use_side_example_files_are_valid():
    """docs/example: every config loads, the clusters parse, the figures are committed."""
    from xrmod.analysis.observations import read_observations
    from xrmod.job import load_job

    example = ROOT / "docs" / "example"
    families = {}
    for name in ("gauss", "gauss-hard", "tilt", "tilt-hard"):
        job = load_job(example / f"{name}.toml")
        assert job.config.library.noise == "asimov"
        families[name] = (job.config.modifier.family, tuple(job.config.instrument.band))
    assert families["gauss"] == ("gaussian", (0.5, 10.0))
    assert families["tilt-hard"] == ("tilt", (2.0, 7.0))
    obs = read_observations(example / "clusters.csv")
    assert len(obs) == 80 and obs.has_bands
    text = (ROOT / "README.md").read_text()
    for figure in ("docs/bias-map.png", "docs/posterior.png"):
        assert f"]({figure})" in text
        assert (ROOT / figure).stat().st_size > 50_000
    assert "(docs/api.md)" in text and (ROOT / "docs" / "api.md").exists()
