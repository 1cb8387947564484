/* I-LIF multi-step forward on the CPU: one fused loop over T steps, compiled at first use (_ilif_cpu.py).
 *
 * Semantics are those of snn_det_zoo/neurons/_ilif_reference.py and the op order of _ilif_torch.py, so that
 * the results are bit-identical to the torch loops: compiled with -ffp-contract=off (no fused multiply-add)
 * and without -ffast-math (IEEE division, no reassociation). The neurons are walked in blocks of BLOCK: a
 * block's state stays in L1 over all T steps, and x and the spikes stream through memory once. Half and
 * bfloat16 values are read and written as raw 16-bit words (the state is float32), float64 inputs keep a
 * float64 state.
 *
 * The optional mask (training) is one byte per neuron and step, [T, N]: 1 where 0 <= H/v_th <= D, the
 * straight-through window the torch backward reads.
 */

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define BLOCK 1024

/* Copy a block of results to its destination. With SSE2, non-temporal stores: the outputs are written once
 * and not read back, so they bypass the cache and skip the read-for-ownership of every destination line (a
 * third of the memory traffic of a plain store). */
static inline void put(void* restrict dst, const void* restrict src, size_t bytes) {
#ifdef __SSE2__
    if (((uintptr_t)dst & 15) == 0) {
        size_t k = 0;
        for (; k + 16 <= bytes; k += 16)
            _mm_stream_si128((__m128i*)((char*)dst + k), _mm_loadu_si128((const __m128i*)((const char*)src + k)));
        memcpy((char*)dst + k, (const char*)src + k, bytes - k);
        return;
    }
#endif
    memcpy(dst, src, bytes);
}

static inline void fence(void) {
#ifdef __SSE2__
    _mm_sfence();
#endif
}

static inline float bf16_load(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t bf16_store(float f) {
    /* Round to nearest even as torch's float -> bfloat16; a NaN stays a quiet NaN. */
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded); /* branch-free: vectorises */
}

/* round(clamp(u, 0, D)) half to even, torch.clamp's NaN propagation kept (a NaN compares false). For
 * 0 <= c < 2^23 (float) or 2^52 (double), (c + 2^23) - 2^23 rounds c to an integer, half to even, exactly:
 * vectorisable without SSE4.1's roundps. The caller checks D against those bounds. */
#define ILIF_FORWARD(NAME, S, R, LOAD, STORE, MAGIC)                                                        \
    void NAME(const S* x, const R* v0, S* spikes, uint8_t* mask, R* v_last, R* v_seq, int64_t n_neurons,   \
              int64_t lo, int64_t hi, int32_t steps, R beta, R tau, R v_threshold, R max_level,           \
              int32_t decay_input) {                                                                       \
        R v[BLOCK], h[BLOCK];                                                                              \
        S out[BLOCK];                                                                                      \
        uint8_t window[BLOCK];                                                                             \
        const int unit = v_threshold == (R)1;                                                              \
        for (int64_t b0 = lo; b0 < hi; b0 += BLOCK) {                                                      \
            const int64_t m = hi - b0 < BLOCK ? hi - b0 : BLOCK;                                           \
            for (int32_t t = 0; t < steps; ++t) {                                                          \
                const int64_t o = (int64_t)t * n_neurons + b0;                                             \
                const S* restrict xt = x + o;                                                              \
                if (t == 0 && !v0) {                                                                       \
                    /* From a zero state the charge is exactly the input (or the input / tau). */          \
                    if (decay_input)                                                                       \
                        for (int64_t i = 0; i < m; ++i) h[i] = (R)LOAD(xt[i]) / tau;                       \
                    else                                                                                   \
                        for (int64_t i = 0; i < m; ++i) h[i] = (R)LOAD(xt[i]);                             \
                } else {                                                                                   \
                    const R* restrict prev = t == 0 ? v0 + b0 : v;                                         \
                    if (decay_input)                                                                       \
                        for (int64_t i = 0; i < m; ++i) h[i] = ((R)LOAD(xt[i]) - prev[i]) / tau + prev[i]; \
                    else                                                                                   \
                        for (int64_t i = 0; i < m; ++i) h[i] = prev[i] * beta + (R)LOAD(xt[i]);            \
                }                                                                                          \
                if (unit)                                                                                  \
                    for (int64_t i = 0; i < m; ++i) {                                                      \
                        R c = h[i] < (R)0 ? (R)0 : h[i];                                                   \
                        c = c > max_level ? max_level : c;                                                 \
                        window[i] = (uint8_t)(c == h[i]);                                                  \
                        const R s = (c + MAGIC) - MAGIC;                                                   \
                        v[i] = h[i] - s;                                                                   \
                        out[i] = STORE(s);                                                                 \
                    }                                                                                      \
                else                                                                                       \
                    for (int64_t i = 0; i < m; ++i) {                                                      \
                        const R u = h[i] / v_threshold;                                                    \
                        R c = u < (R)0 ? (R)0 : u;                                                         \
                        c = c > max_level ? max_level : c;                                                 \
                        window[i] = (uint8_t)(c == u);                                                     \
                        const R s = (c + MAGIC) - MAGIC;                                                   \
                        v[i] = h[i] - s * v_threshold;                                                     \
                        out[i] = STORE(s);                                                                 \
                    }                                                                                      \
                put(spikes + o, out, (size_t)m * sizeof(S));                                               \
                if (mask) put(mask + o, window, (size_t)m);                                                \
                if (v_seq) put(v_seq + o, v, (size_t)m * sizeof(R));                                       \
            }                                                                                              \
            put(v_last + b0, v, (size_t)m * sizeof(R));                                                    \
        }                                                                                                  \
        fence();                                                                                           \
    }

#define SAME(value) (value)

ILIF_FORWARD(ilif_forward_f32, float, float, SAME, SAME, 8388608.0f)
ILIF_FORWARD(ilif_forward_f64, double, double, SAME, SAME, 4503599627370496.0)
ILIF_FORWARD(ilif_forward_bf16, uint16_t, float, bf16_load, bf16_store, 8388608.0f)
#ifdef ILIF_HAVE_FLOAT16
ILIF_FORWARD(ilif_forward_f16, _Float16, float, SAME, (_Float16), 8388608.0f)
#endif

/* The backward of the torch loops (_ilif_torch.ilif_backward_torch), op for op: from the last step to the
 * first, dL/dV flows back through the carry; the bool mask [T, N] is the straight-through window. Absent
 * gradients (null pointers) are skipped, not read as zeros, so that the sums round exactly as the torch
 * loops' (which add only the gradients that exist). */
#define ILIF_BACKWARD(NAME, S, R, LOAD, STORE)                                                            \
    void NAME(const S* grad_spikes, const R* grad_v_last, const R* grad_v_seq, const uint8_t* mask,       \
              S* grad_x, R* grad_v0, int64_t n_neurons, int64_t lo, int64_t hi, int32_t steps, R beta,    \
              R tau, R v_threshold, int32_t decay_input, int32_t detach_reset) {                          \
        R carry[BLOCK], gv[BLOCK];                                                                         \
        S out[BLOCK];                                                                                      \
        const int unit = v_threshold == (R)1;                                                              \
        for (int64_t b0 = lo; b0 < hi; b0 += BLOCK) {                                                      \
            const int64_t m = hi - b0 < BLOCK ? hi - b0 : BLOCK;                                           \
            for (int32_t t = steps - 1; t >= 0; --t) {                                                     \
                const int64_t o = (int64_t)t * n_neurons + b0;                                             \
                int have = t < steps - 1; /* the carry exists below the last step */                       \
                if (have) memcpy(gv, carry, (size_t)m * sizeof(R));                                        \
                if (grad_v_seq) {                                                                          \
                    const R* restrict gs = grad_v_seq + o;                                                 \
                    if (have)                                                                              \
                        for (int64_t i = 0; i < m; ++i) gv[i] = gv[i] + gs[i];                             \
                    else                                                                                   \
                        memcpy(gv, gs, (size_t)m * sizeof(R));                                             \
                    have = 1;                                                                              \
                }                                                                                          \
                if (grad_v_last && t == steps - 1) {                                                       \
                    const R* restrict gl = grad_v_last + b0;                                               \
                    if (have)                                                                              \
                        for (int64_t i = 0; i < m; ++i) gv[i] = gv[i] + gl[i];                             \
                    else                                                                                   \
                        memcpy(gv, gl, (size_t)m * sizeof(R));                                             \
                    have = 1;                                                                              \
                }                                                                                          \
                const S* restrict gsp = grad_spikes + o;                                                   \
                const uint8_t* restrict mt = mask + o;                                                     \
                for (int64_t i = 0; i < m; ++i) {                                                          \
                    R level = (R)LOAD(gsp[i]);                                                             \
                    if (!unit) level = level / v_threshold;                                                \
                    R h;                                                                                   \
                    if (!have)                                                                             \
                        h = mt[i] ? level : (R)0;                                                          \
                    else if (detach_reset)                                                                 \
                        h = (mt[i] ? level : (R)0) + gv[i];                                                \
                    else                                                                                   \
                        h = mt[i] ? level : gv[i];                                                         \
                    R gx;                                                                                  \
                    if (decay_input) {                                                                     \
                        gx = h / tau;                                                                      \
                        carry[i] = h - gx;                                                                 \
                    } else {                                                                               \
                        gx = h;                                                                            \
                        carry[i] = h * beta;                                                               \
                    }                                                                                      \
                    out[i] = STORE(gx);                                                                    \
                }                                                                                          \
                put(grad_x + o, out, (size_t)m * sizeof(S));                                               \
            }                                                                                              \
            if (grad_v0) put(grad_v0 + b0, carry, (size_t)m * sizeof(R));                                  \
        }                                                                                                  \
        fence();                                                                                           \
    }

ILIF_BACKWARD(ilif_backward_f32, float, float, SAME, SAME)
ILIF_BACKWARD(ilif_backward_f64, double, double, SAME, SAME)
ILIF_BACKWARD(ilif_backward_bf16, uint16_t, float, bf16_load, bf16_store)
#ifdef ILIF_HAVE_FLOAT16
ILIF_BACKWARD(ilif_backward_f16, _Float16, float, SAME, (_Float16))
#endif
