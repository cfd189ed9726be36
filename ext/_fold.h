/* The native engine's sparse x dense fold, in C for function multiversioning.
 *
 * out[i, k] = sum_j data[j] * x[indices[j], k], j over row i of a CSR matrix,
 * for every column k of the row-major x (n_energy x ncol) and out (nrow x ncol).
 *
 * Each sum runs over the row's non-zeros in stored order with one accumulator,
 * as SciPy's CSR matrix-vector product does, so every column is bit-identical
 * to `matrix @ x[:, k]` (the simulated counts must equal the reference
 * engine's). A single sum is a chain of dependent additions, so columns go in
 * blocks of 16 (then 8, then 4) independent accumulators that the compiler
 * keeps in vector registers: the loop is then bound by arithmetic throughput,
 * not by the latency of one chain, and one pass over the matrix serves 16
 * columns.
 *
 * Why C: GCC and Clang compile this function twice on x86-64 Linux
 * (`target_clones`): AVX2 (1.7x faster here) and the baseline, chosen when the
 * module loads. Cython cannot put that attribute on a function. Neither clone
 * may contract a * b + c into a fused multiply-add (AVX2 alone has none), so
 * both give the same bits.
 */
#ifndef XRMOD_FOLD_H
#define XRMOD_FOLD_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__has_attribute)
#  if __has_attribute(target_clones)
#    define XRMOD_FOLD_CLONES __attribute__((target_clones("avx2", "default")))
#  endif
#endif
#ifndef XRMOD_FOLD_CLONES
#  define XRMOD_FOLD_CLONES
#endif

#define XRMOD_FOLD_BLOCK(W)                                                     \
    for (; kb + (W) <= ncol; kb += (W)) {                                       \
        for (i = 0; i < nrow; i++) {                                            \
            double a[W];                                                        \
            for (k = 0; k < (W); k++) a[k] = 0.0;                               \
            for (j = indptr[i]; j < indptr[i + 1]; j++) {                       \
                const double v = data[j];                                       \
                const double *row = x + (ptrdiff_t)indices[j] * ncol + kb;      \
                for (k = 0; k < (W); k++) a[k] = a[k] + v * row[k];             \
            }                                                                   \
            for (k = 0; k < (W); k++) out[i * ncol + kb + k] = a[k];            \
        }                                                                       \
    }

/* ncol must be a multiple of 4 (the caller pads with zero columns). */
XRMOD_FOLD_CLONES
static void xrmod_fold(ptrdiff_t nrow, ptrdiff_t ncol, const int32_t *indptr,
                       const int32_t *indices, const double *data, const double *x,
                       double *out)
{
    ptrdiff_t i, j, k, kb = 0;
    XRMOD_FOLD_BLOCK(16)
    XRMOD_FOLD_BLOCK(8)
    XRMOD_FOLD_BLOCK(4)
}

#undef XRMOD_FOLD_BLOCK

#endif /* XRMOD_FOLD_H */
