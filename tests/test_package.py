"""The installed package: compiled kernels present, imports light."""

import importlib.machinery
import subprocess
import sys

import xrmod


def test_import_loads_the_compiled_kernels():
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for module in (xrmod._modify, xrmod._grid):
        assert module.__file__.endswith(suffixes), module.__file__


def test_version_and_public_api():
    assert xrmod.__version__ and xrmod.__version__ != "0+unknown"
    assert "gaussian" in xrmod.families()
    assert xrmod.get_family("edge").parameters == ("energy", "depth", "width")
    cfg = xrmod.load_config()
    assert cfg.source_path == "<default>"


def test_import_does_no_heavy_work():
    # no FITS, HDF5, XSPEC or MPI machinery is loaded just by importing xrmod
    code = (
        "import sys, xrmod; "
        "print(','.join(m for m in ('h5py', 'astropy', 'xspectrampoline', 'mpi4py', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
    assert out.stderr == ""
