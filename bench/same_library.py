"""Are two xrmod libraries the same, byte for byte, but for their run times?

Used to check that a change of code changes no result: build a library with
the previous version and with this one, then::

    python bench/same_library.py before.h5 after.h5

Every dataset is compared by its bytes (NaN included), with its dtype, shape
and attributes; every group's attributes too. Attributes that record *when*
the run happened (``start_time``, ``end_time``) are skipped, and any named
with ``--ignore``. Exit 0 when the same, 1 with the differences listed.
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np

RUN_TIMES = ("start_time", "end_time")


def _value(v: object) -> bytes:
    arr = np.asarray(v)
    if arr.dtype.kind == "O":  # variable-length strings: compare the text, not the pointers
        return repr((arr.shape, arr.tolist())).encode()
    return repr((arr.dtype.str, arr.shape)).encode() + arr.tobytes()


def _attrs(obj: h5py.HLObject, ignore: set[str]) -> dict[str, bytes]:
    return {k: _value(v) for k, v in obj.attrs.items() if k not in ignore}


def differences(a: str, b: str, ignore: set[str]) -> list[str]:
    """What differs between libraries *a* and *b*, one line each."""
    found: list[str] = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a: list[str] = []
        names_b: list[str] = []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if sorted(names_a) != sorted(names_b):
            found.append(f"objects differ: {sorted(set(names_a) ^ set(names_b))}")
        for name in ["/", *sorted(set(names_a) & set(names_b))]:
            x, y = fa[name], fb[name]
            ax, ay = _attrs(x, ignore), _attrs(y, ignore)
            for key in sorted(set(ax) | set(ay)):
                if ax.get(key) != ay.get(key):
                    found.append(f"{name}: attribute {key!r} differs")
            if isinstance(x, h5py.Dataset):
                if (x.dtype, x.shape) != (y.dtype, y.shape):
                    found.append(f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
                elif _value(x[()]) != _value(y[()]):
                    found.append(f"{name}: values differ")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--ignore", action="append", default=[], help="attribute to skip")
    args = parser.parse_args(argv)
    found = differences(args.a, args.b, set(RUN_TIMES) | set(args.ignore))
    for line in found:
        print(line)
    print(f"{args.a} vs {args.b}: {'same' if not found else f'{len(found)} differences'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
