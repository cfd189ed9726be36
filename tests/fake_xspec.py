"""A small stand-in for PyXSPEC that records what the xspec engine asks of it.

It does no physics: ``Fit.perform`` puts kT at the simulated truth times
:data:`ARF_FACTOR` (1 with the first ARF loaded since ``AllData.clear()``,
the original; 1.05 with any other), ``Fit.error`` puts the bounds at ±10 % with the flags
``Session.flags(session)`` returns. It does keep XSPEC's rules that the engine
depends on: a fake spectrum based on the loaded one keeps its response,
numerical keywords and, unless one is given, its background; fakeit notices
every channel again; channels are numbered from 1; a model must exist before
fakeit.

Use :func:`new_module` for a fresh ``xspec`` module (one session) and put it in
``sys.modules["xspec"]``. Hooks (``session.hooks[name] = callable(session)``)
run at "fakeit", "perform" and "error" and may raise, as PyXSPEC raises
``Exception`` for XSPEC errors.
"""

from __future__ import annotations

import os
import types

import numpy as np
from astropy.io import fits

#: kT found with the original ARF / with any other ARF, relative to the simulated truth.
ARF_FACTOR = (1.0, 1.05)
#: Expected counts per channel of every fake spectrum.
EXPECTED_PER_CHANNEL = 3.0

# model.dat of the supported components (XSPEC's parameter order).
_MODEL_DAT = {
    "tbabs": ("nH",),
    "phabs": ("nH",),
    "wabs": ("nH",),
    "bremss": ("kT", "norm"),
    "zbremss": ("kT", "Redshift", "norm"),
    "apec": ("kT", "Abundanc", "Redshift", "norm"),
}


class Session:
    """Everything the fake XSPEC holds and records."""

    def __init__(self):
        self.settings = {}  # Xset and Fit attributes, last value set
        self.seed_history = []
        self.rmf_loads = []
        self.arf_loads = []  # dicts: path, existed, specresp
        self.background_loads = []
        self.spectra_loaded = []  # template paths given to Spectrum()
        self.fakeits = []  # dicts: seed, applyStats, noWrite, settings, arf, truth
        self.performs = []  # dicts: arf, start kT, noticed
        self.errors = []  # command strings
        self.models = []
        self.spectrum = None
        self.first_arf = None
        self.hooks = {}
        self.flags = lambda session: "FFFFFFFFF"
        self.model_zero = False
        self.statistic = 0.0

    def hook(self, name):
        if name in self.hooks:
            self.hooks[name](self)

    @property
    def model(self):
        if not self.models:
            raise Exception("Error: no model defined")
        return self.models[-1]

    def load_arf(self, path):
        existed = os.path.exists(path)
        if not existed:
            raise Exception(f"Error: cannot open ARF {path}")
        with fits.open(path) as f:
            specresp = np.array(f["SPECRESP"].data["SPECRESP"], dtype=np.float64)
        if self.first_arf is None:
            self.first_arf = path
        self.arf_loads.append({"path": path, "existed": existed, "specresp": specresp})


class _Settings:
    """Xset / Fit attributes: every assignment is recorded under its prefix."""

    def __init__(self, session, prefix):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_prefix", prefix)

    def __setattr__(self, name, value):
        self._session.settings[f"{self._prefix}.{name}"] = value
        if self._prefix == "Xset" and name == "seed":
            if not isinstance(value, int) or not 0 < value < 2**31:
                raise Exception(f"Error: bad seed {value!r}")
            self._session.seed_history.append(value)

    def __getattr__(self, name):
        try:
            return self._session.settings[f"{self._prefix}.{name}"]
        except KeyError:
            raise AttributeError(name) from None


class Parameter:
    def __init__(self, name):
        self.name = name
        self._values = [1.0, 0.01, -1e24, -1e24, 1e24, 1e24]
        self.frozen = False
        self.error = (0.0, 0.0, "FFFFFFFFF")

    @property
    def values(self):
        return list(self._values)

    @values.setter
    def values(self, value):
        if isinstance(value, (int, float)):
            self._values[0] = float(value)
            return
        value = [float(v) for v in value]
        if not 1 <= len(value) <= 6:
            raise Exception("Error: bad parameter values")
        self._values[: len(value)] = value


class Model:
    def __init__(self, session, expression):
        parts = expression.lower().split("*")
        if len(parts) != 2 or any(p not in _MODEL_DAT for p in parts):
            raise Exception(f"Error: cannot parse model {expression!r}")
        self._session = session
        self.expression = expression
        self.parameters = [Parameter(n) for p in parts for n in _MODEL_DAT[p]]
        session.models.append(self)

    def __call__(self, index):
        if not 1 <= index <= len(self.parameters):
            raise Exception(f"Error: no parameter {index}")
        return self.parameters[index - 1]

    def by_name(self, name):
        return next(p for p in self.parameters if p.name == name)

    def values(self, spectrum_index):
        n = 50
        return (0.0,) * n if self._session.model_zero else (1.0e-3,) * n


class Response:
    def __init__(self, session, spectrum):
        self._session = session
        self._spectrum = spectrum

    @property
    def arf(self):
        return self._spectrum.arf_path

    @arf.setter
    def arf(self, path):
        self._session.load_arf(path)
        self._spectrum.arf_path = path


class Spectrum:
    """A loaded spectrum; ``Spectrum(path)`` reads a type I PHA (channels, keywords)."""

    def __init__(self, session, path=None):
        self._session = session
        self.rmf = None
        self.arf_path = None
        self.background_path = ""
        if path is not None:
            with fits.open(path) as f:
                hdu = f["SPECTRUM"]
                self.channels = np.array(hdu.data["CHANNEL"])
                self.counts = np.array(hdu.data["COUNTS"], dtype=np.float64)
                self.exposure = float(hdu.header["EXPOSURE"])
                self.backScale = float(hdu.header["BACKSCAL"])
            session.spectra_loaded.append(path)
            session.spectrum = self
        self._noticed = np.ones(getattr(self, "counts", np.zeros(0)).size, dtype=bool)

    @property
    def response(self):
        if self.rmf is None:
            raise Exception("Error: No response is assigned to source 1")
        return Response(self._session, self)

    @response.setter
    def response(self, path):
        self._session.rmf_loads.append(path)
        self.rmf = path

    @property
    def background(self):
        return self.background_path

    @background.setter
    def background(self, path):
        self._session.background_loads.append(path)
        self.background_path = path

    @property
    def noticed(self):
        return [int(i) + 1 for i in np.flatnonzero(self._noticed)]

    @property
    def values(self):
        return tuple(self.counts[self._noticed] / self.exposure)

    def notice(self, ranges):
        self._select(ranges, True)

    def ignore(self, ranges):
        self._select(ranges, False)

    def _select(self, ranges, value):
        if ranges.strip().lower() == "all":
            self._noticed[:] = value
            return
        for token in ranges.split():
            lo, _, hi = token.partition("-")
            a = int(lo)
            b = int(hi) if hi else a
            if not 1 <= a <= b <= self._noticed.size:
                raise Exception(f"Error: bad channel range {token!r}")
            self._noticed[a - 1 : b] = value


class FakeitSettings:
    def __init__(
        self,
        response="",
        arf="",
        background="",
        exposure="",
        correction="",
        backExposure="",
        fileName="",
    ):
        self.response = response
        self.arf = arf
        self.background = background
        self.exposure = str(exposure)
        self.correction = str(correction)
        self.backExposure = str(backExposure)
        self.fileName = fileName


class DataManager:
    def __init__(self, session):
        self._session = session

    def __call__(self, index):
        if index != 1 or self._session.spectrum is None:
            raise Exception(f"Error: no spectrum {index}")
        # a new object on each call, as PyXSPEC's, for the one spectrum held
        original = self._session.spectrum
        view = Spectrum.__new__(Spectrum)
        view.__dict__ = original.__dict__
        return view

    def clear(self):
        self._session.spectrum = None
        self._session.first_arf = None

    def fakeit(self, nSpectra=1, settings=None, applyStats=True, filePrefix="", noWrite=False):
        session = self._session
        session.hook("fakeit")
        base = session.spectrum
        if base is None or base.rmf is None:
            raise Exception("Error: fakeit here needs a loaded spectrum with a response")
        settings = settings or FakeitSettings()
        truth = session.model.by_name("kT").values[0]
        fake = Spectrum(session)
        fake.channels = base.channels
        fake.rmf = base.rmf  # based on the loaded spectrum: same response, not read again
        fake.arf_path = base.arf_path
        fake.background_path = settings.background or base.background_path
        fake.exposure = float(settings.exposure) if settings.exposure else base.exposure
        fake.backScale = base.backScale
        expected = np.full(base.channels.size, EXPECTED_PER_CHANNEL)
        if applyStats:
            seed = session.settings.get("Xset.seed", 0)
            fake.counts = np.random.default_rng(seed).poisson(expected).astype(np.float64)
        else:
            fake.counts = expected
        fake._noticed = np.ones(fake.counts.size, dtype=bool)  # ignore status reset
        session.spectrum = fake
        session.fakeits.append(
            {
                "seed": session.settings.get("Xset.seed"),
                "applyStats": applyStats,
                "noWrite": noWrite,
                "nSpectra": nSpectra,
                "settings": vars(settings).copy(),
                "arf": base.arf_path,
                "truth": truth,
            }
        )


class FitManager(_Settings):
    def __init__(self, session):
        super().__init__(session, "Fit")

    @property
    def statistic(self):
        return self._session.statistic

    def perform(self):
        session = self._session
        session.hook("perform")
        spectrum = session.spectrum
        truth = session.fakeits[-1]["truth"]
        kt = session.model.by_name("kT")
        factor = ARF_FACTOR[0] if spectrum.arf_path == session.first_arf else ARF_FACTOR[1]
        session.performs.append(
            {"arf": spectrum.arf_path, "start": kt.values[0], "noticed": len(spectrum.noticed)}
        )
        kt.values = truth * factor
        session.model.by_name("norm").values = 1.0e-3
        session.statistic = 100.0 + factor

    def error(self, command):
        session = self._session
        session.hook("error")
        session.errors.append(command)
        par = session.model(int(command.split()[-1]))
        best = par.values[0]
        par.error = (0.9 * best, 1.1 * best, session.flags(session))


def new_module():
    """A fresh fake ``xspec`` module; its session is ``module.session``."""
    session = Session()
    module = types.ModuleType("xspec")
    module.session = session
    module.Xset = _Settings(session, "Xset")
    module.Fit = FitManager(session)
    module.AllData = DataManager(session)
    module.AllModels = types.SimpleNamespace(clear=lambda: session.models.clear())
    module.FakeitSettings = FakeitSettings
    module.Model = lambda expression: Model(session, expression)
    module.Spectrum = lambda path: Spectrum(session, path)
    return module
