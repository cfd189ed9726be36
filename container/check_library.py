"""Check a library written by a container image's test run (needs only h5py and NumPy).

Run by ``container/test-image.sh`` with the host's Python (from outside the image) and by
the Apptainer definition's ``%test`` with the image's own. Exit status 0 when the library
is complete and well formed, 1 with one line per problem otherwise::

    python check_library.py LIBRARY --axes mu,sigma,amp --ranks 2 --writer mpio [--engine xspec]
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np

#: Root attributes every library must carry (provenance; README "The library file").
PROVENANCE = (
    "format",
    "format_version",
    "xrmod_version",
    "config",
    "engine",
    "model",
    "seed",
    "arf",
    "arf_sha256",
    "rmf",
    "rmf_sha256",
    "n_ranks",
    "writer",
    "start_time",
    "end_time",
    "xspec_models",
    "xspec_models_origin",
    "xspec_models_version",
)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def problems(
    path: str,
    axes: list[str],
    ranks: int | None,
    writer: str | None,
    engine: str | None = None,
) -> list[str]:
    """Everything wrong with the library at *path* (an empty list when it is fine).

    Parameters
    ----------
    path : str
        The HDF5 library.
    axes : list of str
        Expected modifier axes, in the order of the library's dimensions.
    ranks : int or None
        Expected ``n_ranks`` attribute (None: not checked).
    writer : str or None
        Expected ``writer`` attribute (None: not checked).
    engine : str or None
        Expected ``engine`` attribute (None: not checked); the XSPEC that computed
        the library must be recorded either way.
    """
    found: list[str] = []
    with h5py.File(path, "r") as f:
        missing = [key for key in PROVENANCE if key not in f.attrs]
        if missing:
            found.append(f"missing provenance attributes: {', '.join(missing)}")
        if _text(f.attrs.get("format", "")) != "xrmod-library":
            found.append(f"format is {f.attrs.get('format')!r}, not 'xrmod-library'")
        if ranks is not None and int(f.attrs.get("n_ranks", -1)) != ranks:
            found.append(f"n_ranks is {f.attrs.get('n_ranks')}, expected {ranks}")
        if writer is not None and _text(f.attrs.get("writer", "")) != writer:
            found.append(f"writer is {f.attrs.get('writer')!r}, expected {writer!r}")
        if engine is not None and _text(f.attrs.get("engine", "")) != engine:
            found.append(f"engine is {f.attrs.get('engine')!r}, expected {engine!r}")
        if engine == "xspec" and _text(f.attrs.get("xspec_models_origin", "")) != "heasoft":
            found.append("an xspec-engine library not computed by HEASoft's XSPEC")

        order = [_text(a) for a in f["PARAMS"].attrs["axes"]]
        if order != axes:
            found.append(f"axis order {order}, expected {axes}")
        shape = tuple(f["PARAMS"][name].size for name in order)
        shape += (f["LIBRARY/temps"].size,)

        for name, status_name in (("results", "status"), ("results_modified", "status_modified")):
            if status_name not in f["LIBRARY"]:
                found.append(f"no dataset LIBRARY/{status_name}")
                continue
            status = f["LIBRARY"][status_name][()]
            if status.shape != shape:
                found.append(f"{status_name} has shape {status.shape}, expected {shape}")
            codes, counts = np.unique(status, return_counts=True)
            if not np.all(status == 1):
                summary = ", ".join(f"{c}: {n}" for c, n in zip(codes, counts, strict=True))
                found.append(f"{status_name}: not every fit is done and ok ({summary})")
            data = f["LIBRARY"][name][()]
            if data.shape != (*shape, 3):
                found.append(f"{name} has shape {data.shape}, expected {(*shape, 3)}")
            elif not np.all(np.isfinite(data[..., 1][status == 1])):
                found.append(f"{name}: a fit with status 1 has a non-finite kT")
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line: check one library, print the verdict, return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--axes", required=True, help="expected axis order, comma-separated")
    parser.add_argument("--ranks", type=int, help="expected n_ranks")
    parser.add_argument("--writer", help="expected writer (mpio, merge, direct)")
    parser.add_argument("--engine", help="expected engine (native, xspec)")
    args = parser.parse_args(argv)
    found = problems(args.library, args.axes.split(","), args.ranks, args.writer, args.engine)
    for line in found:
        print(f"check_library: {args.library}: {line}", file=sys.stderr)
    if not found:
        print(f"check_library: {args.library}: ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
