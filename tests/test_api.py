"""``import xrmod``: the public API and nothing else, loaded on first use."""

import inspect
import subprocess
import sys

import pytest

import xrmod


def test_the_package_shows_only_its_public_api():
    assert dir(xrmod) == sorted(xrmod.__all__)
    for name in xrmod.__all__:
        assert getattr(xrmod, name) is not None, name
    # what the package's own module used to leak
    for name in ("annotations", "version", "PackageNotFoundError", "importlib"):
        assert name not in xrmod.__all__
    for name in ("version", "PackageNotFoundError", "nonexistent"):
        with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
            getattr(xrmod, name)


def test_public_names_are_those_of_their_modules():
    from xrmod.analysis import describe, open_library
    from xrmod.errors import RunError, XrmodError
    from xrmod.grid import Grid
    from xrmod.status import Status

    assert xrmod.open_library is open_library and xrmod.describe is describe
    assert xrmod.Grid is Grid and xrmod.Status is Status
    assert issubclass(xrmod.RunError, xrmod.XrmodError) and xrmod.XrmodError is XrmodError
    assert xrmod.RunError is RunError


def test_import_loads_no_module_of_the_package():
    code = (
        "import sys, xrmod; "
        "print(sorted(m for m in sys.modules if m.startswith(('xrmod.', 'numpy'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    code = "import sys, xrmod; xrmod.Status; print('xrmod.status' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_the_analysis_part_is_its_own_package():
    import xrmod.library

    assert not hasattr(xrmod.library, "open_library")
    assert not hasattr(xrmod.library, "describe")
    signature = inspect.signature(xrmod.open_library)
    assert signature.return_annotation == "xarray.Dataset"
