"""OGIP instrument responses (ARF, RMF) and spectra (PHA), read and written with astropy.

Formats:

* ARF and RMF follow OGIP memo CAL/GEN/92-002 (George et al. 1992, with the
  92-002a addendum): an ARF is a ``SPECRESP`` table of effective area per
  energy bin; an RMF is a ``MATRIX`` (or ``SPECRESP MATRIX``) table holding, per
  energy bin, ``N_GRP`` groups of consecutive channels (``F_CHAN``, ``N_CHAN``)
  and their compressed ``MATRIX`` values, plus an ``EBOUNDS`` table giving the
  nominal energy range of every channel.
* PHA spectra follow OGIP/92-007 (Arnaud et al.): a ``SPECTRUM`` table with
  ``CHANNEL`` and ``COUNTS`` or ``RATE`` columns and keywords ``EXPOSURE``,
  ``BACKSCAL``, ``AREASCAL``, ``POISSERR``.

Readers are general (scalar, fixed-length or variable-length group columns,
rows with several or no groups, any ``TLMIN`` channel offset), copy everything
they need into memory and close the file before returning. Every problem found
in a file raises :class:`xrmod.errors.ResponseError` naming the file and the
extension or column concerned; errors raised by astropy are chained.

Modules (everything public is imported here: use ``xrmod.responses``):

* :mod:`~xrmod.responses.types`: :class:`ARF`, :class:`RMF`, :class:`PHA`;
* :mod:`~xrmod.responses.validation`: the checks of grids, areas and channel
  bounds, :func:`check_compatible`, :func:`check_background`;
* :mod:`~xrmod.responses.fits_access`: opening FITS files, tables, columns, keywords;
* :mod:`~xrmod.responses.reading`: :func:`read_arf`, :func:`read_rmf`,
  :func:`read_pha`, :func:`file_sha256`;
* :mod:`~xrmod.responses.writing`: :func:`write_arf`, :func:`write_rmf`,
  :func:`write_pha`.
"""

from xrmod.responses.reading import file_sha256, read_arf, read_pha, read_rmf
from xrmod.responses.types import ARF, PHA, RMF
from xrmod.responses.validation import GRID_ATOL, GRID_RTOL, check_background, check_compatible
from xrmod.responses.writing import write_arf, write_pha, write_rmf

__all__ = [
    "ARF",
    "GRID_ATOL",
    "GRID_RTOL",
    "PHA",
    "RMF",
    "check_background",
    "check_compatible",
    "file_sha256",
    "read_arf",
    "read_pha",
    "read_rmf",
    "write_arf",
    "write_pha",
    "write_rmf",
]
