/* Poisson draws from NumPy's streams, without Python in the loop.
 *
 * A point's counts are drawn by default_rng(SeedSequence((seed, flat))).poisson(mean):
 * NumPy's SeedSequence (O'Neill's seed_seq_fe hash, pool of 4 words), its PCG64
 * (XSL-RR 128/64) and its Poisson sampler (multiplication below λ = 10, Hörmann's
 * PTRS from 10 on). These functions follow NumPy's C code step for step
 * (numpy/random/bit_generator.pyx, src/pcg64/pcg64.h, src/distributions/
 * distributions.c), so every draw equals NumPy's bit for bit; the test suite checks
 * that against NumPy itself over many seeds, points and means.  Compiled without
 * floating-point contraction: NumPy's baseline build has none either.
 */
#ifndef XRMOD_RANDOM_H
#define XRMOD_RANDOM_H

#include <math.h>
#include <stdint.h>

typedef __uint128_t xr_u128;

typedef struct {
    xr_u128 state;
    xr_u128 inc;
} xr_pcg64;

/* ---------------------------------------------------------------- SeedSequence */
#define XR_INIT_A 0x43b0d7e5u
#define XR_MULT_A 0x931e8875u
#define XR_INIT_B 0x8b51f9ddu
#define XR_MULT_B 0x58f38dedu
#define XR_MIX_MULT_L 0xca01f9ddu
#define XR_MIX_MULT_R 0x4973f715u
#define XR_XSHIFT 16
#define XR_POOL 4

static inline uint32_t xr_hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= XR_MULT_A;
    value *= *hash_const;
    value ^= value >> XR_XSHIFT;
    return value;
}

static inline uint32_t xr_mix(uint32_t x, uint32_t y)
{
    uint32_t result = XR_MIX_MULT_L * x - XR_MIX_MULT_R * y;
    result ^= result >> XR_XSHIFT;
    return result;
}

/* The 32-bit words of a non-negative integer, least significant first (at least one). */
static inline int xr_words(uint64_t n, uint32_t *out)
{
    int k = 0;
    do {
        out[k++] = (uint32_t)(n & 0xffffffffu);
        n >>= 32;
    } while (n != 0);
    return k;
}

/* PCG64 seeded as PCG64(SeedSequence((seed, flat))). */
static inline void xr_seed(xr_pcg64 *rng, uint64_t seed, uint64_t flat)
{
    uint32_t entropy[4], pool[XR_POOL], words[8];
    uint32_t hash_const = XR_INIT_A, value;
    uint64_t val[4];
    int n = xr_words(seed, entropy), i, j;
    n += xr_words(flat, entropy + n);
    for (i = 0; i < XR_POOL; i++)
        pool[i] = xr_hashmix(i < n ? entropy[i] : 0u, &hash_const);
    for (i = 0; i < XR_POOL; i++)
        for (j = 0; j < XR_POOL; j++)
            if (i != j)
                pool[j] = xr_mix(pool[j], xr_hashmix(pool[i], &hash_const));
    /* at most 4 entropy words: none left over for the pool */
    hash_const = XR_INIT_B;
    for (i = 0; i < 8; i++) { /* generate_state(4, uint64): 8 words, the pool cycled */
        value = pool[i % XR_POOL];
        value ^= hash_const;
        hash_const *= XR_MULT_B;
        value *= hash_const;
        value ^= value >> XR_XSHIFT;
        words[i] = value;
    }
    for (i = 0; i < 4; i++)
        val[i] = (uint64_t)words[2 * i] | ((uint64_t)words[2 * i + 1] << 32);
    {
        const xr_u128 mult = ((xr_u128)2549297995355413924ULL << 64) + 4865540595714422341ULL;
        xr_u128 initstate = ((xr_u128)val[0] << 64) + val[1];
        xr_u128 initseq = ((xr_u128)val[2] << 64) + val[3];
        rng->state = 0;
        rng->inc = (initseq << 1u) | 1u;
        rng->state = rng->state * mult + rng->inc;
        rng->state += initstate;
        rng->state = rng->state * mult + rng->inc;
    }
}

static inline uint64_t xr_next64(xr_pcg64 *rng)
{
    const xr_u128 mult = ((xr_u128)2549297995355413924ULL << 64) + 4865540595714422341ULL;
    uint64_t v;
    unsigned int rot;
    rng->state = rng->state * mult + rng->inc;
    v = (uint64_t)(rng->state >> 64u) ^ (uint64_t)rng->state;
    rot = (unsigned int)(rng->state >> 122u);
    return (v >> rot) | (v << ((-rot) & 63u));
}

static inline double xr_next_double(xr_pcg64 *rng)
{
    return (double)(xr_next64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------- Poisson */
static inline double xr_loggam(double x)
{
    static const double a[10] = {8.333333333333333e-02, -2.777777777777778e-03,
                                 7.936507936507937e-04, -5.952380952380952e-04,
                                 8.417508417508418e-04, -1.917526917526918e-03,
                                 6.410256410256410e-03, -2.955065359477124e-02,
                                 1.796443723688307e-01, -1.39243221690590e+00};
    double x0, x2, gl, gl0;
    int64_t k, n;
    if (x == 1.0 || x == 2.0)
        return 0.0;
    n = x < 7.0 ? (int64_t)(7 - x) : 0;
    x0 = x + n;
    x2 = (1.0 / x0) * (1.0 / x0);
    gl0 = a[9];
    for (k = 8; k >= 0; k--) {
        gl0 *= x2;
        gl0 += a[k];
    }
    gl = gl0 / x0 + 0.5 * 1.8378770664093453e+00 + (x0 - 0.5) * log(x0) - x0;
    if (x < 7.0) {
        for (k = 1; k <= n; k++) {
            gl -= log(x0 - 1.0);
            x0 -= 1.0;
        }
    }
    return gl;
}

static inline int64_t xr_poisson_ptrs(xr_pcg64 *rng, double lam)
{
    int64_t k;
    double U, V, us, loglam = NAN;
    double slam = sqrt(lam);
    double b = 0.931 + 2.53 * slam;
    double a = -0.059 + 0.02483 * b;
    double vr = 0.9277 - 3.6224 / (b - 2);
    /* ln λ and 1/α only on the slow path (~14 % of draws): the same values as NumPy's */
    for (;;) {
        U = xr_next_double(rng) - 0.5;
        V = xr_next_double(rng);
        us = 0.5 - fabs(U);
        k = (int64_t)floor((2 * a / us + b) * U + lam + 0.43);
        if (us >= 0.07 && V <= vr)
            return k;
        if (k < 0 || (us < 0.013 && V > us))
            continue;
        if (isnan(loglam))
            loglam = log(lam);
        if ((log(V) + log(1.1239 + 1.1328 / (b - 3.4)) - log(a / (us * us) + b)) <=
            (-lam + k * loglam - xr_loggam(k + 1)))
            return k;
    }
}

static inline int64_t xr_poisson(xr_pcg64 *rng, double lam)
{
    int64_t x = 0;
    double prod = 1.0, enlam;
    if (lam >= 10)
        return xr_poisson_ptrs(rng, lam);
    if (lam == 0)
        return 0;
    enlam = exp(-lam);
    for (;;) { /* multiplication method */
        prod *= xr_next_double(rng);
        if (prod > enlam)
            x += 1;
        else
            return x;
    }
}

/* counts[c] = Poisson(mean[c]) for one point, from SeedSequence((seed, flat)); returns Σ counts. */
static inline double xr_poisson_point(const double *mean, double *counts, int64_t n,
                                      uint64_t seed, uint64_t flat)
{
    xr_pcg64 rng;
    double total = 0.0;
    int64_t c;
    xr_seed(&rng, seed, flat);
    for (c = 0; c < n; c++) {
        counts[c] = (double)xr_poisson(&rng, mean[c]);
        total += counts[c];
    }
    return total;
}

#endif /* XRMOD_RANDOM_H */
