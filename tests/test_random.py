"""The compiled Poisson sampler draws NumPy's numbers, point for point."""

from __future__ import annotations

import numpy as np
import pytest

from xrmod import _random
from xrmod.engines.base import simulate


def numpy_draw(mean: np.ndarray, seed: int, flat: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence((seed, flat))).poisson(mean)


@pytest.mark.parametrize(
    ("seed", "flat"),
    [
        (0, 0),
        (20261127, 0),
        (20261127, 12345),
        (2**32 - 1, 2**32),  # one word and two words of entropy
        (2**32, 7),
        (2**63 - 1, 2**40 + 3),
    ],
)
def test_draws_equal_numpys_at_edges_of_the_entropy_words(seed, flat):
    rng = np.random.default_rng(seed % 1000)
    mean = np.concatenate(
        [
            [0.0, 1e-300, 1e-8, 0.5, 9.999999, 10.0, 10.000001, 1e3, 1e7],
            rng.exponential(30.0, 500),
        ]
    )
    out = np.empty_like(mean)
    total = _random.poisson(mean, seed, flat, out)
    expected = numpy_draw(mean, seed, flat)
    np.testing.assert_array_equal(out, expected)
    assert total == expected.sum()


def test_draws_equal_numpys_over_many_streams_and_means():
    rng = np.random.default_rng(7)
    for _ in range(400):
        seed = int(rng.integers(0, 2**63))
        flat = int(rng.integers(0, 2**45))
        scale = float(rng.choice([1e-3, 0.3, 3.0, 12.0, 300.0]))
        mean = rng.exponential(scale, 64)
        mean[rng.random(64) < 0.1] = 0.0
        out = np.empty_like(mean)
        _random.poisson(mean, seed, flat, out)
        np.testing.assert_array_equal(out, numpy_draw(mean, seed, flat))


def test_simulate_keeps_numpys_stream_and_refuses_bad_means():
    mean = np.linspace(0.0, 40.0, 101)
    counts, bkg = simulate(mean, 99, seed=5, asimov=False)
    assert bkg is None
    np.testing.assert_array_equal(counts, numpy_draw(mean, 5, 99))
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="finite and >= 0"):
            simulate(np.array([1.0, bad]), 0, seed=5, asimov=False)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="channels"):
        _random.poisson(np.ones(3), 1, 2, np.empty(2))
    assert _random.poisson(np.ones(0), 1, 2, np.empty(0)) == 0.0
