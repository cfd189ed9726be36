"""Make clusters.csv: 40 clusters measured by a trusted instrument and by EPIC-pn.

The "true" EPIC-pn effective area is the bundled one times a Gaussian bump
(hidden from the inference: mu = 1.3 keV, sigma = 0.55 keV, amp = +0.08:
more soft area than the calibration says), so EPIC-pn temperatures fitted
over 0.5-10 keV come out low, the more so the hotter the cluster, while those
fitted over 2-7 keV, above the bump, agree with the reference — the pattern
Schellenberger et al. (2015) found between EPIC and Chandra ACIS.

Each cluster gets a random temperature (2-9 keV) and exposure (20-100 ks);
for each band its EPIC-pn spectrum is simulated with Poisson noise and
fitted with the nominal response by xrmod's native engine (a library of that
one point); the reference temperature is the truth scattered by its stated
3 % error. Run from this directory: ``python make_clusters.py``.
"""

import csv
import logging
import tempfile
from pathlib import Path

import h5py
import numpy as np

import xrmod

TRUTH = {"mu": 1.3, "sigma": 0.55, "amp": 0.08}
BANDS = {"0.5-10": (0.5, 10.0), "2-7": (2.0, 7.0)}
CONFIG = """\
[library]
output = "{out}"
noise = "poisson"
seed = {seed}
[instrument]
exposure = {exposure}
band = [{lo}, {hi}]
[source]
temperatures = [{kT}]
[modifier]
family = "gaussian"
[modifier.axes]
mu = {mu}
sigma = {sigma}
amp = {amp}
"""


def fit(tmp: Path, name: str, **fields) -> tuple[float, float, float]:
    """EPIC-pn's kT_lo, kT_fit, kT_hi of one simulated spectrum."""
    out, cfg = tmp / f"{name}.h5", tmp / f"{name}.toml"
    cfg.write_text(CONFIG.format(out=out, **fields, **TRUTH))
    assert xrmod.generate(cfg, progress=False) == 0
    with h5py.File(out, "r") as f:
        return tuple(float(v) for v in f["LIBRARY/results"][()].reshape(3))


def main() -> None:
    """Write clusters.csv: 40 clusters, each in the two bands."""
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(2015)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(40):
            kT = round(float(np.exp(rng.uniform(np.log(2.0), np.log(9.0)))), 3)
            exposure = round(float(rng.uniform(20e3, 100e3)), -3)
            err = 0.03 * kT
            ref = round(kT + err * rng.standard_normal(), 3)
            for k, (band, (lo, hi)) in enumerate(BANDS.items()):
                seed = 2 * i + k
                low, best, high = fit(Path(tmp), f"c{i}-{k}", seed=seed, exposure=exposure,
                                      lo=lo, hi=hi, kT=kT)  # fmt: skip
                rows.append({
                    "name": f"cluster{i:02d}", "band": band,
                    "T_ref": ref, "T_ref_err": round(err, 3),
                    "T_obs": round(best, 4), "T_obs_lo": round(low, 4), "T_obs_hi": round(high, 4),
                })  # fmt: skip
    with open("clusters.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
