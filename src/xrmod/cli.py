"""Command-line entry points: ``xrmod-gen`` and ``xrmod``.

The command line is the only place that turns exceptions into exit codes:

====  ==============================================================
code  meaning
====  ==============================================================
0     success
1     unexpected internal error (``--debug`` shows the traceback)
2     bad input: config, FITS file, modifier parameters (no work done)
3     an engine cannot run (e.g. its model library is missing)
====  ==============================================================
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from xrmod import __version__
from xrmod.errors import XrmodError

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_OK", "gen_main", "main"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2

log = logging.getLogger("xrmod")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(prog: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call *func*, turning project errors into one line on stderr and an exit code."""
    _setup_logging(getattr(args, "verbose", False))
    try:
        return func(args)
    except XrmodError as exc:
        if args.debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc}\n"
            f"{prog}: run again with --debug for the traceback, and please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")


# --------------------------------------------------------------------------- xrmod-gen
def _gen_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xrmod-gen",
        description="Build a calibration-modification library. Without CONFIG, runs the "
        "embedded default job (bundled XMM-Newton EPIC-pn response, tbabs*zbremss).",
    )
    parser.add_argument("config", nargs="?", help="TOML configuration file (see 'xrmod init')")
    parser.add_argument("-o", "--output", help="library file (overrides library.output)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing library file")
    parser.add_argument(
        "--check", action="store_true", help="validate config and responses, then stop"
    )
    parser.add_argument("--no-progress", action="store_true", help="log lines, no progress bar")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common_flags(parser)
    return parser


def _gen(args: argparse.Namespace) -> int:
    from xrmod.job import load_job

    job = load_job(args.config, output=args.output)
    log.info("%s", job.summary())
    if args.check:
        return EXIT_OK
    from xrmod.driver import run

    return run(job, overwrite=args.overwrite, progress=not args.no_progress)


def gen_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xrmod-gen``."""
    args = _gen_parser().parse_args(argv)
    return _run("xrmod-gen", _gen, args)


# --------------------------------------------------------------------------- xrmod
def _init(args: argparse.Namespace) -> int:
    from xrmod.config import template_text

    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"xrmod init: {path} exists; use --force to replace it", file=sys.stderr)
        return EXIT_INPUT
    path.write_text(template_text())
    log.info("wrote a commented configuration template to %s", path)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from xrmod.job import load_job

    job = load_job(args.config)
    print(job.summary())
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from xrmod.library import describe

    print(describe(args.file))
    return EXIT_OK


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

    p = sub.add_parser("info", help="describe a library file")
    p.add_argument("file", help="HDF5 library")
    p.set_defaults(func=_info)

    for p in sub.choices.values():
        _common_flags(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xrmod``."""
    args = _main_parser().parse_args(argv)
    return _run(f"xrmod {args.command}", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
