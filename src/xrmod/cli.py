"""Command-line entry points: ``xrmod-gen`` and ``xrmod``.

The command line is the only place that turns exceptions into exit codes:

====  ==============================================================
code  meaning
====  ==============================================================
0     success (failed points, if any, are in the status dataset)
1     unexpected internal error (``--debug`` shows the traceback)
2     bad input: config, FITS file, modifier parameters, an existing
      or unwritable output (a path where no file can be made, a
      directory, no space or permission while the library is created),
      the output locked by another run (``OUTPUT.lock``), a rank file
      or library that cannot be read for ``--resume``, ``--writer
      mpio`` without parallel h5py, ``--resume`` of a library from
      another config (no work done);
      a damaged library (``xrmod info``, ``--resume``: a checksum
      mismatch, a truncated file)
3     an engine cannot run (e.g. its model library is missing);
      ``xrmod check-engines``: an engine it was asked to compare is
      unavailable here (e.g. PyXSPEC): the others ran, nothing passed
4     the run stopped on a fatal error on some rank (a failed write:
      a full disk, a quota, a permission withdrawn; an unexpected
      error outside the engine); every finished unit is kept:
      ``--resume`` continues once the cause is fixed
5     ``xrmod check-engines``: the engines disagree beyond
      ``--tolerance`` at some point
130   interrupted by SIGINT (Ctrl-C): finished units kept, ``--resume``
141   standard output closed by its reader (``xrmod info LIB | head``):
      the output stops there, quietly, as for any command
143   interrupted by SIGTERM (e.g. a batch time limit): same as 130
====  ==============================================================

Under MPI (``mpirun -n N xrmod-gen``) every rank exits with the same code and
only rank 0 prints the error message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xrmod import __version__
from xrmod.errors import (
    EXIT_DISAGREE,
    EXIT_ENGINE,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_RUN,
    EXIT_SIGINT,
    EXIT_SIGPIPE,
    EXIT_SIGTERM,
    InputError,
    XrmodError,
)

__all__ = [
    "EXIT_DISAGREE",
    "EXIT_ENGINE",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_RUN",
    "EXIT_SIGINT",
    "EXIT_SIGPIPE",
    "EXIT_SIGTERM",
    "gen_main",
    "main",
]

log = logging.getLogger("xrmod")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )


def _rank() -> int:
    """The MPI rank of this process (0 without MPI); never imports mpi4py."""
    from xrmod.driver import world_rank

    return world_rank()


def _run(prog: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call *func*, turning project errors into one line on stderr and an exit code."""
    _setup_logging(getattr(args, "verbose", False))
    try:
        code = func(args)
        sys.stdout.flush()  # a reader gone away shows here, not in Python's exit
        return code
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_SIGPIPE
    except XrmodError as exc:
        if args.debug:
            raise
        if _rank() == 0:  # under MPI every rank raises the same error: print it once
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except Exception as exc:
        if args.debug:
            raise
        from xrmod.output import os_error_message

        refused = os_error_message(exc)  # a full disk, a quota, a permission: not a bug
        if refused is not None:
            if _rank() == 0:
                print(f"{prog}: error: {refused}", file=sys.stderr)
            return EXIT_RUN
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc}\n"
            f"{prog}: run again with --debug for the traceback, and please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _discard_stdout() -> None:
    """Send what is left for standard output to /dev/null: its reader has gone.

    Python's advice for SIGPIPE (the :mod:`signal` docs): without it the
    interpreter's last flush at exit fails again and prints an error.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")


# --------------------------------------------------------------------------- xrmod-gen
def _gen_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xrmod-gen",
        description="Build a calibration-modification library. Without CONFIG, runs the "
        "embedded default job (bundled XMM-Newton EPIC-pn response, tbabs*zbremss). "
        "'mpirun -n N xrmod-gen CONFIG' runs on N MPI ranks (needs mpi4py).",
    )
    parser.add_argument("config", nargs="?", help="TOML configuration file (see 'xrmod init')")
    parser.add_argument("-o", "--output", help="library file (overrides library.output)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing library file")
    parser.add_argument(
        "--check", action="store_true", help="validate config and responses, then stop"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted library made from the same config: merge rank files "
        "left behind, then compute only the points not yet computed",
    )
    parser.add_argument(
        "--force-unlock",
        action="store_true",
        help="take over the output's lock file (OUTPUT.lock) left by a run that is no "
        "longer running on another host (a lock of a dead run on this host is taken over "
        "by itself)",
    )
    parser.add_argument(
        "--writer",
        choices=("auto", "mpio", "merge"),
        default="auto",
        help="how ranks write the library: mpio (parallel HDF5, needs h5py built with MPI), "
        "merge (rank files merged by rank 0 at the end); auto picks mpio when h5py has MPI",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: a log line every 5%% of the points (the default when "
        "stderr is not a terminal)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common_flags(parser)
    return parser


def _gen(args: argparse.Namespace) -> int:
    from xrmod.driver import generate

    return generate(
        args.config,
        output=args.output,
        check=args.check,
        overwrite=args.overwrite,
        resume=args.resume,
        writer=args.writer,
        progress=not args.no_progress,
        force_unlock=args.force_unlock,
    )


def gen_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xrmod-gen``."""
    args = _gen_parser().parse_args(argv)
    return _run("xrmod-gen", _gen, args)


# --------------------------------------------------------------------------- xrmod
def _init(args: argparse.Namespace) -> int:
    from xrmod.config import template_text

    path = Path(args.path)
    if path.exists() and not args.force:
        raise InputError(f"{path} exists; use --force to replace it")
    try:
        path.write_text(template_text())
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}") from e
    log.info("wrote a commented configuration template to %s", path)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from xrmod.job import load_job
    from xrmod.output import check_output_path

    job = load_job(args.config)
    check_output_path(job.output)  # a file can be made there (an existing one is fine)
    print(job.summary())
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from xrmod.analysis.describe import format_summary, summary

    found = summary(args.file, verify=args.verify)
    if args.json:
        import json

        print(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        print(format_summary(found))
    damaged = found["integrity"]["damaged"]
    if damaged:  # after the summary: what is there is still shown
        raise InputError(f"{found['path']}: damaged: {'; '.join(damaged)}")
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from xrmod.analysis.plot import parse_at, plot_library

    output = args.output
    if output is None:  # LIBRARY.png (LIBRARY-KIND.png for one kind), here
        suffix = "" if args.kind == "all" else f"-{args.kind}"
        output = f"{Path(args.file).stem}{suffix}.png"
    at = parse_at(args.at)
    plot_library(args.file, output, kind=args.kind, x=args.x, y=args.y, at=at, kT=args.kT)
    return EXIT_OK


_PLOT_EPILOG = """defaults (every figure shows the same slice):
  --x, --y   the first two modifier axes with more than one value (with only
             one, --y is kT_true)
  --at       each other axis: the middle of its grid; a strength axis (amp,
             index, slope, depth: 0 is no distortion) the value of largest
             magnitude whose map is mostly computed; a realization axis is
             averaged unless --at realization=N
  --kT       the middle temperature of the grid
A value off the grid is taken as the nearest grid value within 5 % of the
grid spacing, and refused otherwise.

examples:
  xrmod plot library.h5 -o library.png
  xrmod plot library.h5 -o map.pdf --kind map --x mu --y sigma --at amp=-0.1 --kT 6
"""


def _emulate(args: argparse.Namespace) -> int:
    from xrmod.analysis.emulator import Emulator

    emulator = Emulator.from_library(args.file, kind=args.kind)
    where = None if args.no_save else emulator.save(args.output)
    if args.json:
        import json

        print(json.dumps(emulator.summary() | {"saved_to": where}, indent=2))
    else:
        print(emulator.describe())
        if where:
            print(f"saved to {where}")
    return EXIT_OK


def _infer(args: argparse.Namespace) -> int:
    from xrmod.analysis.inference import infer

    *libraries, observations = args.files
    if not libraries:
        raise InputError("give one or more libraries, then the observations CSV")
    if observations.endswith((".h5", ".hdf5")):
        raise InputError(f"{observations}: the observations CSV comes last")
    if args.plot:  # before the sampling, not after it
        from xrmod.analysis.inference_plot import check_output

        check_output(args.plot)
    result = infer(
        libraries,
        observations,
        scatter=args.scatter,
        scatter_max=args.scatter_max,
        priors=_assignments(args.prior, "--prior", "AXIS=LO,HI", _number_pair),
        fixed=_assignments(args.fix, "--fix", "AXIS=VALUE", float),
        confidence=args.confidence,
        walkers=args.walkers,
        steps=args.steps,
        seed=args.seed,
        evidence=not args.no_evidence,
        live_points=args.live_points,
        emulator=args.emulator,
        bands=args.band,
    )
    if args.plot:
        from xrmod.analysis.inference_plot import plot_inference

        plot_inference(result, args.plot)
        log.info("wrote %s", args.plot)
    if args.json:
        import json

        print(json.dumps(result.as_dict(), indent=2, allow_nan=False, default=float))
    else:
        print(result.format())
    return EXIT_OK


def _assignments(
    items: Sequence[str] | None, option: str, form: str, parse: Callable[[str], Any]
) -> dict[str, Any]:
    """``["mu=2.5"]`` -> ``{"mu": parse("2.5")}``; *form* names the expected text in errors."""
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = parse(value)
        except ValueError:
            raise InputError(f"{option} {item!r}: expected {form}") from None
    return out


def _number_pair(text: str) -> tuple[float, float]:
    """``"1,4"`` -> ``(1.0, 4.0)``; ValueError unless two numbers."""
    lo, hi = (float(v) for v in text.split(","))
    return lo, hi


_INFER_EPILOG = """observations CSV (one source per row; '#' comments allowed):
  T_ref       the trusted instrument's temperature, keV (required)
  T_ref_err   its error (optional)
  T_obs       the temperature with the ARF in question, keV (required)
  T_obs_err   its error, or T_obs_lo and T_obs_hi: the bounds of its interval
  name        a label (optional)
  band        LO-HI keV (optional): the row is compared with the library of
              that band (libraries of one family and grid, one per band)
Errors are at --confidence (default 0.683; 0.9 for XSPEC's 90 %% errors).

With several libraries (e.g. a gaussian and a tilt family on the same
response), each is fitted and they are ranked by evidence (nested sampling)
or, with --no-evidence, by BIC; the no-distortion baseline (T_obs = T_ref)
is always reported.

examples:
  xrmod infer library.h5 clusters.csv --plot posterior.png
  xrmod infer gauss.h5 tilt.h5 clusters.csv --scatter --json > result.json
  xrmod infer library.h5 clusters.csv --fix sigma=0.5 --prior mu=1,4
"""


def _check_engines(args: argparse.Namespace) -> int:
    from xrmod.check import check_engines

    report = check_engines(
        args.config, engines=args.engines, points=args.points, tolerance=args.tolerance
    )
    print(report.format())
    return {"agree": EXIT_OK, "unavailable": EXIT_ENGINE, "disagree": EXIT_DISAGREE}[report.outcome]


_CHECK_EPILOG = """\
Noise is forced to "asimov" for the check: the same seed does not give the same
Poisson draw in two engines, the expected spectrum is the same for all of them.
sigma = (kT_hi - kT_lo) / (2 sqrt(fit.error_delta)) from the fitted interval.

exit codes:
  0  every point agrees within --tolerance
  2  bad input (config, --engines, --points, --tolerance)
  3  an engine could not run here (e.g. xspec without PyXSPEC): the others ran
     and are printed, but the check did not pass
  5  the engines disagree beyond --tolerance at some point (wins over 3)
"""


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrmod", description="xrmod tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a commented configuration template")
    p.add_argument("path", nargs="?", default="xrmod.toml", help="where (default xrmod.toml)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=_init)

    p = sub.add_parser("validate", help="check a configuration and its responses")
    p.add_argument("config", nargs="?", help="TOML file (default: the embedded config)")
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "info",
        help="describe a library file",
        description="Describe a library: provenance, axes, progress (also of a library "
        "xrmod-gen is still writing), points per status code and fit, the config.",
    )
    p.add_argument("file", help="HDF5 library")
    p.add_argument(
        "--json",
        action="store_true",
        help="print it as one JSON object (keys: xrmod.analysis.describe)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="verify the checksums of every dataset (reads the whole library); by default "
        "only those of the axes, temperatures and status. A damaged library: exit code 2",
    )
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "plot",
        help="draw a library's bias map, bias curves and status map",
        description="Draw T1/kT_true over two axes (bias map), T1/kT_true against kT_true "
        "for a few distortions with their bounds (bias curves), and where the fits failed "
        "(status map, T1 and T1'), into one PNG, PDF or SVG file.",
        epilog=_PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="HDF5 library")
    p.add_argument(
        "-o",
        "--output",
        help="FILE.png, .pdf or .svg (default: the library's name with .png, here)",
    )
    p.add_argument(
        "--kind",
        choices=("all", "map", "curves", "status"),
        default="all",
        help="which figure (default: %(default)s, the three in one figure)",
    )
    p.add_argument("--x", metavar="AXIS", help="the map's x axis, varied by the curves too")
    p.add_argument("--y", metavar="AXIS", help="the map's y axis (kT_true allowed)")
    p.add_argument(
        "--at",
        action="append",
        metavar="AXIS=VALUE",
        help="fix an axis the figure does not vary (repeatable; realization=N selects one)",
    )
    p.add_argument("--kT", type=float, metavar="KEV", help="the map's true temperature, keV")
    p.set_defaults(func=_plot)

    p = sub.add_parser(
        "emulate",
        help="build a library's emulator, report its accuracy, save it",
        description="Build an emulator of LIBRARY (T1 and T1' at any point inside its grid), "
        "print its leave-one-out accuracy and save it into the library (/EMULATORS) or "
        "into --output.",
    )
    p.add_argument("file", help="HDF5 library")
    p.add_argument(
        "--kind",
        choices=("spline", "mlp"),
        default="spline",
        help="cubic spline interpolation (default) or a neural network (needs xrmod[nn])",
    )
    p.add_argument("-o", "--output", help="save into this HDF5 file instead of the library")
    p.add_argument("--no-save", action="store_true", help="only report the accuracy")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_emulate)

    p = sub.add_parser(
        "infer",
        help="infer the ARF distortion from observed temperatures; rank families",
        description="Sample the posterior of the distortion theta that explains T_obs "
        "against T_ref (emcee), report best values, credible intervals, goodness of fit "
        "and the posterior predictive; with several libraries, rank them by evidence.",
        epilog=_INFER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="LIBRARY [LIBRARY ...] OBSERVATIONS.csv"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--plot", metavar="FILE", help="corner plot and predictive (.png, .pdf, .svg)")
    p.add_argument("--scatter", action="store_true", help="fit an intrinsic fractional scatter")
    p.add_argument(
        "--scatter-max", type=float, default=0.5, help="upper end of its flat prior (0.5)"
    )
    p.add_argument(
        "--prior", action="append", metavar="AXIS=LO,HI", help="narrower flat prior (repeatable)"
    )
    p.add_argument("--fix", action="append", metavar="AXIS=VALUE", help="hold an axis fixed")
    p.add_argument(
        "--band",
        action="append",
        metavar="LO-HI",
        help="use only the observations of this band (repeatable; the CSV's band column)",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.6827,
        help="confidence level of the CSV's errors (default 0.683; 0.9 for 90 %%)",
    )
    p.add_argument("--walkers", type=int, help="emcee walkers (default max(64, 8 x parameters))")
    p.add_argument("--steps", type=int, default=3000, help="emcee steps (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-evidence", action="store_true", help="skip nested sampling; rank by BIC")
    p.add_argument("--live-points", type=int, default=400, help="dynesty live points (default 400)")
    p.add_argument(
        "--emulator",
        choices=("spline", "mlp"),
        help="emulator kind (default: the library's saved one if current, else spline)",
    )
    p.set_defaults(func=_infer)

    from xrmod.check import DEFAULT_ENGINES, DEFAULT_POINTS, DEFAULT_TOLERANCE

    p = sub.add_parser(
        "check-engines",
        help="compare engines (native, xspec, reference) on a few grid points",
        description="Run a few grid points of CONFIG through two or more engines on Asimov\n"
        "spectra and print their fitted temperatures side by side; the first engine\n"
        "that runs is the baseline the others are compared with.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="TOML file (default: the embedded config)")
    p.add_argument(
        "--engines",
        default=",".join(DEFAULT_ENGINES),
        help="comma-separated engines: native, xspec, reference (the NumPy oracle) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--points",
        type=int,
        default=DEFAULT_POINTS,
        help="grid points to run, spread over the grid (default: %(default)s)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest difference that agrees, in sigma (default: %(default)s)",
    )
    p.set_defaults(func=_check_engines)

    for p in sub.choices.values():
        _common_flags(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xrmod``."""
    args = _main_parser().parse_args(argv)
    return _run(f"xrmod {args.command}", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
