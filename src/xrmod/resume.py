"""What ``--resume`` checks before it continues a library, and what it then records.

A library may only be continued by the run that would have made it: the
same parsed configuration (:func:`check_same_config`), the same responses'
contents (:func:`check_same_responses`), the same XSPEC models
(:func:`check_same_provenance`). Once they pass, :func:`adopt_config` records
where this run read its configuration and responses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.library import FORMAT_VERSION, decode_attr, read_library_file

if TYPE_CHECKING:
    from xrmod.config import Config
    from xrmod.errors import InputError

__all__ = [
    "adopt_config",
    "check_same_config",
    "check_same_provenance",
    "check_same_responses",
    "stored_config_text",
]


#: Root attributes that record where a run read its configuration and responses.
_CONFIG_ATTRS = ("config", "config_path", "arf", "rmf", "background")
#: The configuration's file paths (``instrument`` keys), compared as the files they name.
_PATH_KEYS = ("arf", "rmf", "background")
#: Parsed values not compared as values on resume: where the library is (it does not
#: decide the results), what follows from the paths, and the paths themselves.
_NOT_COMPARED = frozenset(
    {"library.output", "instrument.bundled", *(f"instrument.{k}" for k in _PATH_KEYS)}
)


def _resume_error(path: str | os.PathLike, what: str) -> InputError:
    from xrmod.errors import InputError

    return InputError(
        f"{path} {what}: refusing to resume it; use --overwrite to start again, "
        "or choose another output"
    )


def stored_config_text(path: str | os.PathLike) -> str:
    """The configuration text a library records (that of its last run)."""
    import h5py

    with h5py.File(path, "r") as f:
        return str(decode_attr(f.attrs.get("config", "")))


def check_same_config(path: str | os.PathLike, config: Config) -> None:
    """Refuse to continue a library that was made from another configuration.

    The *parsed* configurations are compared, not their text: comments, the
    order of keys within a table, a default written out or left implicit do
    not count. Every value that decides the results does, all but
    ``library.output`` (where the library is), the order of
    ``[modifier.axes]`` (the library's dimensions) included. A response path
    is the same when its text is (wherever the config now is: a project
    moved as a whole) or when it names the file the library was made from
    (the resolved path it records); the files' contents are
    :func:`check_same_responses`'s business.

    Raises
    ------
    xrmod.errors.InputError
        *path* is not an xrmod library of this format, its stored configuration
        no longer loads, or a value differs (every differing key named).
    """
    from xrmod.errors import InputError

    with read_library_file(path, "cannot resume, ") as f:
        version = int(f.attrs.get("format_version", 0))
        made_by = decode_attr(f.attrs.get("xrmod_version", "unknown"))
        stored = {key: str(decode_attr(f.attrs.get(key, ""))) for key in _CONFIG_ATTRS}
    if version != FORMAT_VERSION:
        raise InputError(
            f"{path} is an xrmod library of format version {version} (made by xrmod "
            f"{made_by}); this xrmod writes version {FORMAT_VERSION} (a status per fit: "
            "/LIBRARY/status for T1, /LIBRARY/status_modified for T1') and cannot resume it. "
            f"Finish it with xrmod {made_by}, or compute it again with --overwrite (or "
            "another output); 'xrmod info' still reads it"
        )
    if stored["config"] == config.text:
        return  # the same text: the same configuration, its paths read from where it is
    differences = _path_differences(stored, config)
    before = _stored_config(path, stored, config, differences)
    if before is not None:
        differences += _config_differences(before, config)
    if differences:
        details = "; ".join(
            f"key '{key}' differs: library has {was}, config has {now}"
            for key, was, now in differences
        )
        raise _resume_error(path, f"was made from a different configuration ({details})")


def _toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib.loads(text)


def _path_differences(stored: Mapping[str, str], config: Config) -> list[tuple[str, str, str]]:
    """The response paths that are not the same: another text naming another file."""
    try:
        before = _toml(stored["config"]).get("instrument", {})
        after = _toml(config.text).get("instrument", {})
    except ValueError:  # a TOMLDecodeError: parsing the stored text says what is wrong
        return []
    found = []
    for key in _PATH_KEYS:
        if before.get(key, "") == after.get(key, ""):
            continue
        made = Path(stored[key]) if stored[key] else None  # the file the library used
        now = getattr(config.instrument, key)
        if not _same_value(made, now):
            found.append((f"instrument.{key}", _show_value(made), _show_value(now)))
    return found


def _stored_config(
    path: str | os.PathLike,
    stored: Mapping[str, str],
    config: Config,
    differences: list[tuple[str, str, str]],
) -> Config | None:
    """The configuration a library records, parsed (None: it names files gone, as listed).

    Its relative paths are read from the config's directory, else from where
    they were read when the library was made: parsing checks that the files
    exist, and only the other values are compared.
    """
    from xrmod.config import DEFAULT_SOURCE, parse_config
    from xrmod.errors import ConfigError, InputError

    here = None if config.source_path == DEFAULT_SOURCE else Path(config.source_path).absolute()
    error = None
    for base in dict.fromkeys([here.parent if here else None, _creation_base(stored)]):
        try:
            return parse_config(
                stored["config"], source=f"the configuration stored in {path}", base_dir=base
            )
        except ConfigError as e:
            error = error or e
    if differences:
        return None  # it names files that are not there: the differences say so
    raise InputError(
        f"cannot resume {path}: its configuration no longer loads here ({error}); use "
        "--overwrite to start again, or choose another output"
    ) from error


def _creation_base(stored: Mapping[str, str]) -> Path | None:
    """The directory the stored config's relative instrument paths were resolved against.

    ``config_path`` may be relative to a working directory long gone, but each
    recorded response path is that directory joined with the text of the
    config: the directory is what the path has before the text's parts.
    """
    try:
        instrument = _toml(stored["config"]).get("instrument", {})
    except ValueError:  # a TOMLDecodeError: parse_config says what is wrong
        return None
    for key in _PATH_KEYS:
        text = instrument.get(key, "")
        if not isinstance(text, str) or not text.strip():
            continue
        relative = Path(text).expanduser()
        recorded = Path(stored[key])
        if relative.is_absolute() or len(recorded.parts) <= len(relative.parts):
            continue
        base = recorded.parents[len(relative.parts) - 1]
        if str(base / relative) == stored[key]:
            return base
    return None


def _config_differences(before: Config, after: Config) -> list[tuple[str, str, str]]:
    """``(dotted key, library's value, config's value)`` of every other differing value."""
    import dataclasses

    found = []
    for section in dataclasses.fields(before):
        old, new = getattr(before, section.name), getattr(after, section.name)
        if not dataclasses.is_dataclass(old):
            continue  # source_path, text: not values of the job
        for field in dataclasses.fields(old):
            key = f"{section.name}.{field.name}"
            was, now = getattr(old, field.name), getattr(new, field.name)
            if key in _NOT_COMPARED:
                continue
            if key == "modifier.axes":
                found.extend(_axes_differences(was, now))
            elif not _same_value(was, now):
                found.append((key, _show_value(was), _show_value(now)))
    return found


def _axes_differences(before: Any, after: Any) -> list[tuple[str, str, str]]:
    names_before = [name for name, _ in before]
    names_after = [name for name, _ in after]
    if names_before != names_after:  # other axes, or another order of the library's dimensions
        return [("modifier.axes", ", ".join(names_before), ", ".join(names_after))]
    return [
        (f"modifier.axes.{name}", _show_value(was), _show_value(now))
        for (name, was), (_, now) in zip(before, after, strict=True)
        if not _same_value(was, now)
    ]


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and bool(np.array_equal(a, b))
    if isinstance(a, Path) and isinstance(b, Path):
        return a.resolve() == b.resolve()
    return a == b


def _show_value(value: Any) -> str:
    """A value as a message quotes it: numbers exactly (repr), long arrays shortened."""
    if isinstance(value, np.ndarray):
        items = [repr(float(v)) for v in value.ravel()]
        if len(items) > 8:
            return f"[{', '.join(items[:3])}, ..., {', '.join(items[-2:])}] ({len(items)} values)"
        return f"[{', '.join(items)}]"
    if isinstance(value, tuple):
        return f"[{', '.join(repr(v) for v in value)}]"
    if isinstance(value, Path):
        return f"'{value}'"
    if value is None:
        return "none"
    return repr(value)


def check_same_responses(path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    """Refuse to continue a library whose responses have changed since it was made.

    *provenance* is this run's (:meth:`xrmod.job.Job.provenance`): the SHA-256
    of its ARF, RMF and background must be the library's, or the library
    would mix points computed with two responses under one checksum.

    Raises
    ------
    xrmod.errors.InputError
        A checksum differs: the file and both checksums are named.
    """
    import h5py

    with h5py.File(path, "r") as f:
        stored = {key: decode_attr(f.attrs.get(key)) for key in provenance}
    for key, label in (("arf", "ARF"), ("rmf", "RMF"), ("background", "background")):
        was, now = stored.get(f"{key}_sha256"), provenance[f"{key}_sha256"]
        if was == now:
            continue
        file = provenance[key] or "none"
        made = stored.get(key) or "none"
        where = "" if os.path.normpath(made) == os.path.normpath(file) else f" (then {made})"
        raise _resume_error(
            path,
            f"was computed with another {label}: {file} has SHA-256 {now or 'none'}, "
            f"the library's {label}{where} had {was or 'not recorded'}",
        )


def check_same_provenance(path: str | os.PathLike, attrs: Mapping[str, str]) -> None:
    """Refuse to continue a library whose points another XSPEC computed.

    Every key of *attrs* (the engine's :meth:`~xrmod.engines.base.Engine.provenance`)
    must hold the same value in the library's root attributes: a library
    resumed with another XSPEC model library would mix two models' fits.

    Raises
    ------
    xrmod.errors.InputError
        A value differs or is not recorded.
    """
    import h5py

    from xrmod.errors import InputError

    with h5py.File(path, "r") as f:
        stored = {key: decode_attr(f.attrs.get(key)) for key in attrs}
    for key, value in attrs.items():
        if key.endswith(("_origin", "_version")) and stored[key] != value:
            was = "not recorded" if stored[key] is None else repr(stored[key])
            raise InputError(
                f"{path} was computed with {key} = {was}, this run has {value!r} "
                f"({attrs.get('xspec_models', '')}): refusing to mix them in one library; "
                "resume it where it was made, or use --overwrite to start again"
            )


def adopt_config(path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    """Record in a library being resumed where this run read its configuration and responses.

    Called once the resume checks passed (the parsed configuration and the
    responses' contents are the library's): the library then describes its
    last run, as a new library made from this configuration would, and the
    rank files this run writes, tied to its configuration text, belong to it.
    """
    import h5py

    with h5py.File(path, "r+") as f:
        for key in _CONFIG_ATTRS:
            if decode_attr(f.attrs.get(key)) != provenance[key]:
                f.attrs[key] = provenance[key]
