"""Which XSPEC model library the native engine loads, and that it never mixes two.

The choice is checked statically (no library loaded) in this process; every
load runs in a subprocess, because a process keeps the first copy it loads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

from xrmod import xspec_library
from xrmod.errors import EngineError
from xrmod.integrity import seal_library
from xrmod.xspec_library import CHOICE_ENV, REQUIRED_SYMBOLS, find_library

BUNDLED = xspec_library._bundled()


@pytest.fixture
def env(monkeypatch):
    """No HEADAS, the default choice: what a plain pip install sees."""
    monkeypatch.delenv("HEADAS", raising=False)
    monkeypatch.delenv(CHOICE_ENV, raising=False)
    return monkeypatch


def fake_heasoft(root: Path, libraries: list[str]) -> Path:
    """A HEADAS whose lib/ holds symlinks to some of the bundled libraries (and its data)."""
    headas = root / "x86_64-pc-linux-gnu-libc2.36"
    (headas / "lib").mkdir(parents=True)
    for name in libraries:
        (headas / "lib" / name).symlink_to(BUNDLED.headas / "lib" / name)
    (headas / "spectral").symlink_to(BUNDLED.headas / "spectral")
    return headas


@pytest.fixture(scope="module")
def complete_heasoft(tmp_path_factory) -> Path:
    """A complete 'HEASoft': every library of the bundled copy, under another HEADAS."""
    names = [p.name for p in (BUNDLED.headas / "lib").iterdir()]
    return fake_heasoft(tmp_path_factory.mktemp("heasoft"), names)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("HEADAS", CHOICE_ENV)}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=full,
        check=False,
    )


EVALUATE = """
    import json, numpy as np
    from xrmod import xspec_library
    from xrmod.models import load_model
    edges = np.geomspace(0.3, 10.0, 51)
    flux = load_model("tbabs*zbremss").photon_flux(edges[:-1], edges[1:], 4.0, nH=0.05)
    print(json.dumps({**xspec_library.provenance(), "flux": flux.tolist()}))
"""


# --------------------------------------------------------------------------- the ELF reader


def test_elf_reader_sees_dependencies_and_symbols():
    elf = xspec_library._read_elf(BUNDLED.headas / "lib" / "libXSFunctions.so")
    assert "libXSUtil.so" in elf.needed and "libc.so.6" in elf.needed
    assert {"C_tbabs", "xszbrm_", "xsphab_", "FNINIT"} <= elf.defined
    assert "C_tbabs" not in xspec_library._read_elf(BUNDLED.headas / "lib" / "libXSUtil.so").defined


def test_closure_puts_dependencies_first():
    order = [p.name for p in BUNDLED.paths]
    assert order[-1] == "libXSFunctions.so"
    assert order.index("libXS.so") < order.index("libXSUtil.so") < order.index("libXSFunctions.so")
    assert not any(n.startswith(("libstdc++", "libgfortran", "libgcc_s")) for n in order)
    assert xspec_library._missing_symbols(list(BUNDLED.paths)) == []


def test_elf_reader_refuses_other_files(tmp_path):
    path = tmp_path / "text.so"
    path.write_bytes(b"not an ELF file at all, just text")
    with pytest.raises(ValueError, match="not a 64-bit little-endian ELF"):
        xspec_library._read_elf(path)


# --------------------------------------------------------------------------- the choice


def test_without_headas_the_bundled_copy(env):
    candidate, why = find_library()
    assert candidate.origin == "bundled" and why == ""
    assert candidate.headas == BUNDLED.headas


def test_complete_heasoft_is_preferred(env, complete_heasoft):
    env.setenv("HEADAS", str(complete_heasoft))
    candidate, why = find_library()
    assert candidate.origin == "heasoft" and why == ""
    assert all(p.parent == complete_heasoft / "lib" for p in candidate.paths)


def test_incomplete_heasoft_falls_back_and_says_why(env, tmp_path, compiler):
    # HEASoft 6.20's libXSFunctions.so names none of the libraries that define FNINIT
    # and the table setters (its xspec program links them all): a model library that
    # cannot be loaded on its own
    headas = fake_heasoft(tmp_path, [])
    build_library(compiler, headas / "lib" / "libXSFunctions.so", "void C_tbabs(void) {}")
    env.setenv("HEADAS", str(headas))
    candidate, why = find_library()
    assert candidate.origin == "bundled"
    assert str(headas) in why and "FNINIT" in why and "C_tbabs" not in why
    env.setenv(CHOICE_ENV, "heasoft")
    with pytest.raises(EngineError, match=f"{CHOICE_ENV}=heasoft but HEADAS={headas}.*FNINIT"):
        find_library()


def test_heasoft_without_model_library_falls_back(env, tmp_path):
    env.setenv("HEADAS", str(tmp_path))
    candidate, why = find_library()
    assert candidate.origin == "bundled" and "no " in why and "libXSFunctions.so" in why


def test_choice_is_checked(env, complete_heasoft):
    env.setenv("HEADAS", str(complete_heasoft))
    env.setenv(CHOICE_ENV, "bundled")
    assert find_library()[0].origin == "bundled"
    env.setenv(CHOICE_ENV, "newest")
    with pytest.raises(EngineError, match=f"{CHOICE_ENV}='newest': choose one of auto"):
        find_library()
    env.delenv("HEADAS")
    env.setenv(CHOICE_ENV, "heasoft")
    with pytest.raises(EngineError, match="HEADAS is not set"):
        find_library()


def test_required_symbols_cover_the_models():
    from xrmod.models import ABSORBERS, EMISSIONS

    symbols = {c.symbol for c in (*ABSORBERS.values(), *EMISSIONS.values())}
    assert symbols <= set(REQUIRED_SYMBOLS)


# --------------------------------------------------------------------------- loading


def test_bundled_copy_loads_and_is_recorded():
    proc = run_python(EVALUATE)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["xspec_models_origin"] == "bundled"
    assert out["xspec_models_version"].startswith("12.")
    assert "xspectrampoline" in out["xspec_models"]
    assert min(out["flux"]) > 0


def test_complete_heasoft_loads_as_heasoft(complete_heasoft):
    bundled = json.loads(run_python(EVALUATE).stdout.strip().splitlines()[-1])
    proc = run_python(EVALUATE, HEADAS=str(complete_heasoft))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["xspec_models_origin"] == "heasoft"
    assert f"from HEASoft ({complete_heasoft})" in out["xspec_models"]
    assert out["flux"] == bundled["flux"]  # the same files: the same numbers


@pytest.fixture(scope="module")
def compiler() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build a stand-in library")
    return cc


def build_library(cc: str, path: Path, source: str) -> None:
    """Compile *source* into the shared library *path* (soname: its file name)."""
    c_file = path.with_suffix(".c")
    c_file.write_text(source + "\n")
    subprocess.run(
        [cc, "-shared", "-fPIC", f"-Wl,-soname,{path.name}", "-o", str(path), str(c_file)],
        check=True,
    )


@pytest.fixture(scope="module")
def conflicting_lib_dir(tmp_path_factory, compiler) -> Path:
    """A directory with another ``libXSUtil.so`` (same soname, none of its symbols)."""
    where = tmp_path_factory.mktemp("conflict")
    build_library(compiler, where / "libXSUtil.so", "int xrmod_other_libxsutil(void) { return 1; }")
    return where


def test_ld_library_path_cannot_leak_another_copy_in(conflicting_lib_dir):
    """HEASoft's environment puts its own libXSUtil.so first on LD_LIBRARY_PATH."""
    env = {"LD_LIBRARY_PATH": str(conflicting_lib_dir)}
    reference = json.loads(run_python(EVALUATE).stdout.strip().splitlines()[-1])
    proc = run_python(EVALUATE, **env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["flux"] == reference["flux"]
    # control: loading the way xspectrampoline does picks the other libXSUtil up
    control = run_python("import xspectrampoline", **env)
    assert control.returncode != 0
    assert "undefined symbol" in control.stderr


def test_the_same_build_loaded_elsewhere_is_reused(complete_heasoft):
    """Another path to the same files' build (Sherpa linked to another environment's
    xspectrampoline, say): the copy in the process serves, no second one is mapped."""
    code = f"""
        import ctypes
        ctypes.CDLL("{BUNDLED.headas / "lib" / "libXSFunctions.so"}", mode=ctypes.RTLD_GLOBAL)
        import json
        from pathlib import Path
        from xrmod.xspec_library import load_library, _loaded_copies
        lib = load_library()
        print(json.dumps([lib.headas, sorted(map(str, _loaded_copies()))]))
    """
    proc = run_python(code, HEADAS=str(complete_heasoft))
    assert proc.returncode == 0, proc.stderr
    headas, mapped = json.loads(proc.stdout.strip().splitlines()[-1])
    assert headas == str(BUNDLED.headas)
    assert mapped == [str((BUNDLED.headas / "lib").resolve())]


def test_another_build_in_the_process_is_refused(tmp_path, compiler):
    other = tmp_path / "other" / "lib"
    other.mkdir(parents=True)
    build_library(compiler, other / "libXSFunctions.so", "void C_tbabs(void) {}")
    code = f"""
        import ctypes
        ctypes.CDLL("{other / "libXSFunctions.so"}", mode=ctypes.RTLD_GLOBAL)
        from xrmod.xspec_library import load_library
        load_library()
    """
    proc = run_python(code)
    assert proc.returncode != 0
    assert "two versions cannot share one process" in proc.stderr
    assert str(other.resolve()) in proc.stderr


# --------------------------------------------------------------------------- provenance


def test_library_records_the_model_library_and_resume_checks_it(tmp_path):
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(
        f'[library]\noutput = "{out}"\nnoise = "asimov"\n[source]\ntemperatures = [3.0]\n'
        '[modifier]\nfamily = "gaussian"\n[modifier.axes]\nmu = 2.0\nsigma = 0.5\n'
        "amp = [0.0, 0.1]\n"
    )
    exe = shutil.which("xrmod-gen")
    assert exe
    gen = subprocess.run([exe, str(cfg), "--no-progress"], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["xspec_models_origin"] == "bundled"
        assert f.attrs["xspec_models_version"].startswith("12.")
        f_models = f.attrs["xspec_models"]
    info = subprocess.run([shutil.which("xrmod"), "info", str(out)], capture_output=True, text=True)
    assert f_models in info.stdout
    with h5py.File(out, "r+") as f:
        f.attrs["xspec_models_version"] = "12.9.1"
        f["LIBRARY/status"][0] = 0  # something left to do
    seal_library(out)  # as a run with another XSPEC would have left it
    again = subprocess.run(
        [exe, str(cfg), "--no-progress", "--resume"], capture_output=True, text=True
    )
    assert again.returncode == 2, again.stderr
    assert "xspec_models_version = '12.9.1'" in again.stderr
    assert "refusing to mix them in one library" in again.stderr
