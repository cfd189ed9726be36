"""Small libraries for the emulator and inference tests, made by the native engine.

``build`` runs ``xrmod-gen`` in-process on a TOML text; ``observe_at``
makes observations the way an observer would — a library of one θ (off the
emulator's grid), Poisson noise, the fitted T1 and its bounds — so that
inference is tested on data the emulator never saw.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np

GAUSSIAN_AXES = """\
mu = [0.8, 1.5, 2.2, 2.9, 3.6, 4.3, 5.0]
sigma = [0.3, 0.6, 1.0]
amp = [-0.2, -0.1, 0.0, 0.1, 0.2]
"""

TILT_AXES = """\
index = [-0.2, -0.12, -0.06, 0.0, 0.06, 0.12, 0.2]
pivot = 1.0
"""

TEMPERATURES = '{ start = 1.5, stop = 9.0, num = 7, spacing = "log" }'


def config_text(
    out: Path,
    *,
    family: str = "gaussian",
    axes: str = GAUSSIAN_AXES,
    temperatures: str = TEMPERATURES,
    noise: str = "asimov",
    exposure: float = 50000.0,
    band: tuple[float, float] = (0.5, 10.0),
    seed: int = 11,
    realizations: int = 1,
    response: tuple[Path, Path] | None = None,
) -> str:
    files = f'arf = "{response[0]}"\nrmf = "{response[1]}"\n' if response else ""
    return f"""\
[library]
output = "{out}"
noise = "{noise}"
seed = {seed}
realizations = {realizations}
[instrument]
{files}exposure = {exposure}
band = [{band[0]}, {band[1]}]
[source]
temperatures = {temperatures}
[modifier]
family = "{family}"
[modifier.axes]
{axes}"""


def build(tmp: Path, name: str, **options) -> Path:
    """A library made by the native engine (``config_text`` options); its path."""
    from xrmod import driver

    out = tmp / f"{name}.h5"
    cfg = tmp / f"{name}.toml"
    cfg.write_text(config_text(out, **options))
    assert driver.generate(cfg, progress=False) == 0
    return out


def fitted(path: Path) -> dict[str, np.ndarray]:
    """T1 with its bounds, the statuses and the temperatures of a library."""
    with h5py.File(path, "r") as f:
        results = f["LIBRARY/results"][()]
        return {
            "lo": results[..., 0],
            "T1": results[..., 1],
            "hi": results[..., 2],
            "T1_modified": f["LIBRARY/results_modified"][..., 1],
            "status": f["LIBRARY/status"][()],
            "temps": f["LIBRARY/temps"][()],
        }


def observe_at(
    tmp: Path,
    name: str,
    theta: dict[str, float],
    temperatures: list[float],
    *,
    family: str = "gaussian",
    exposures: tuple[float, ...] = (30000.0,),
    ref_error: float = 0.01,
    band: tuple[float, float] = (0.5, 10.0),
    seed: int = 5,
) -> list[dict[str, object]]:
    """Observations of sources at *temperatures* seen through the ARF distorted by *theta*.

    For each exposure, one Poisson library at the single point θ (the native
    engine: simulate with A', fit with A) gives T_obs and its bounds; T_ref
    is the true temperature scattered by *ref_error* (a fraction), its error
    stated. Returns the rows (``write_csv`` writes them).
    """
    axes = "\n".join(f"{k} = {v!r}" for k, v in theta.items()) + "\n"
    temps = "[" + ", ".join(f"{t!r}" for t in temperatures) + "]"
    rng = np.random.default_rng(seed)
    rows = []
    for k, exposure in enumerate(exposures):
        lib = build(
            tmp,
            f"{name}-{k}",
            family=family,
            axes=axes,
            temperatures=temps,
            noise="poisson",
            exposure=exposure,
            band=band,
            seed=seed + 100 * k,
        )
        data = fitted(lib)
        lo, fit, hi = (data[c].reshape(-1) for c in ("lo", "T1", "hi"))
        for i, t in enumerate(data["temps"]):
            if not (np.isfinite(lo[i]) and np.isfinite(hi[i])):
                continue
            err = ref_error * t
            rows.append(
                {
                    "name": f"{name}-{k}-{i}",
                    "band": f"{band[0]}-{band[1]}",
                    "T_ref": round(float(t + err * rng.standard_normal()), 5),
                    "T_ref_err": round(float(err), 5),
                    "T_obs": float(fit[i]),
                    "T_obs_lo": float(lo[i]),
                    "T_obs_hi": float(hi[i]),
                }
            )
    return rows


def write_csv(path: Path, rows: list[dict[str, object]], columns: list[str] | None = None) -> Path:
    columns = columns or ["name", "T_ref", "T_ref_err", "T_obs", "T_obs_lo", "T_obs_hi"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
