# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Poisson draws from NumPy's per-point streams, compiled (``_random.h``).

:func:`poisson` gives, bit for bit, what
``numpy.random.default_rng(numpy.random.SeedSequence((seed, flat))).poisson(mean)``
gives, without building a SeedSequence, a bit generator and a Generator per
point in Python: the engines' simulation (:func:`xrmod.engines.base.simulate`)
and the native engine's compiled point loop draw through it, so every engine
and the Sherpa cross-checks see the same counts.
"""

from libc.stdint cimport int64_t, uint64_t


cdef extern from "_random.h" nogil:
    double xr_poisson_point(const double* mean, double* counts, int64_t n,
                            uint64_t seed, uint64_t flat)


def poisson(
    const double[::1] mean,  # IN (n,) expected counts, finite and >= 0
    seed,                    # IN root seed, 0 <= seed < 2**64
    flat,                    # IN the point's flat index, 0 <= flat < 2**64
    double[::1] out,         # OUT (n,) the counts (float64)
):
    """Draw ``out`` ~ Poisson(``mean``) from ``SeedSequence((seed, flat))``; return Σ out.

    The means are not checked here (NumPy refuses negative or non-finite
    ones): the caller's are expected counts of a validated response.
    """
    cdef uint64_t s = seed, f = flat
    if out.shape[0] != mean.shape[0]:
        raise ValueError(f"out has {out.shape[0]} channels, mean {mean.shape[0]}")
    if mean.shape[0] == 0:
        return 0.0
    with nogil:
        total = xr_poisson_point(&mean[0], &out[0], mean.shape[0], s, f)
    return total
