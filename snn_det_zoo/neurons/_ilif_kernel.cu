// I-LIF multi-step kernels: one thread per neuron walks all T steps, forward and backward in one launch each.
//
// Semantics are those of snn_det_zoo/neurons/_ilif_reference.py. Compiled by NVRTC through CuPy with
// --fmad=false and IEEE division so that the arithmetic matches torch's op by op (no contracted mul+add);
// rintf rounds half to even as torch.round does. The state is float32 whatever the input dtype. Half and
// bfloat16 tensors are read and written as raw 16-bit words, so no header is needed (NVRTC and `nvcc --ptx`
// compile this file as it is).
//
// The forward saves one bit per neuron and step: whether 0 <= H/v_th <= D (the straight-through window).
// Bits are packed 8 steps to a byte, laid out [ceil(T/8), N], which is all the backward needs; a null mask
// (inference) skips them.

typedef unsigned short u16;

__device__ __forceinline__ float load_value(const float* p) { return *p; }
__device__ __forceinline__ void store_value(float* p, float v) { *p = v; }

struct Half { u16 bits; };
struct BFloat16 { u16 bits; };

__device__ __forceinline__ float load_value(const Half* p) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p->bits));
    return f;
}
__device__ __forceinline__ void store_value(Half* p, float v) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p->bits = h;
}

__device__ __forceinline__ float load_value(const BFloat16* p) {
    return __uint_as_float(((unsigned int)p->bits) << 16);
}
__device__ __forceinline__ void store_value(BFloat16* p, float v) {
    // Round to nearest even, as torch's float -> bfloat16 conversion; NaN stays a quiet NaN.
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        p->bits = (u16)((u >> 16) | 0x40u);
        return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    p->bits = (u16)(u >> 16);
}

// VEC consecutive neurons per thread, moved with one aligned vector access per step and tensor.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p) {
    return *reinterpret_cast<const Pack<T, VEC>*>(p);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, VEC>& pack) {
    *reinterpret_cast<Pack<T, VEC>*>(p) = pack;
}

// The caller guarantees n_neurons % VEC == 0 and pointers aligned to a pack.
template <typename S, int VEC>
__device__ __forceinline__ void ilif_forward_impl(
    const S* __restrict__ x, const float* __restrict__ v0, S* __restrict__ spikes,
    unsigned char* __restrict__ mask, float* __restrict__ v_last, float* __restrict__ v_seq,
    long long n_neurons, int steps, float beta, float tau, float v_threshold, float max_level,
    int decay_input) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long n_packs = n_neurons / VEC;
    for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < n_packs; g += stride) {
        const long long n = g * VEC;
        float v[VEC];
        unsigned int bits[VEC];
        Pack<float, VEC> v_in;
        if (v0) v_in = load_pack<float, VEC>(v0 + n);
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            v[k] = v0 ? v_in.v[k] : 0.0f;
            bits[k] = 0;
        }
#pragma unroll 4
        for (int t = 0; t < steps; ++t) {
            const long long i = (long long)t * n_neurons + n;
            const Pack<S, VEC> x_in = load_pack<S, VEC>(x + i);
            Pack<S, VEC> s_out;
            Pack<float, VEC> v_out;
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                const float xt = load_value(&x_in.v[k]);
                const float h = decay_input ? (xt - v[k]) / tau + v[k] : v[k] * beta + xt;
                const float u = v_threshold == 1.0f ? h : h / v_threshold;
                const float level = fminf(fmaxf(u, 0.0f), max_level);
                bits[k] |= (unsigned int)(level == u) << (t & 7);
                const float s = rintf(level);
                v[k] = h - (v_threshold == 1.0f ? s : s * v_threshold);
                store_value(&s_out.v[k], s);
                v_out.v[k] = v[k];
            }
            store_pack<S, VEC>(spikes + i, s_out);
            if (v_seq) store_pack<float, VEC>(v_seq + i, v_out);
            if (mask && ((t & 7) == 7 || t == steps - 1)) {
                Pack<unsigned char, VEC> m_out;
#pragma unroll
                for (int k = 0; k < VEC; ++k) {
                    m_out.v[k] = (unsigned char)bits[k];
                    bits[k] = 0;
                }
                store_pack<unsigned char, VEC>(mask + (long long)(t >> 3) * n_neurons + n, m_out);
            }
        }
        Pack<float, VEC> v_end;
#pragma unroll
        for (int k = 0; k < VEC; ++k) v_end.v[k] = v[k];
        store_pack<float, VEC>(v_last + n, v_end);
    }
}

template <typename S, int VEC>
__device__ __forceinline__ void ilif_backward_impl(
    const S* __restrict__ grad_spikes, const float* __restrict__ grad_v_last,
    const float* __restrict__ grad_v_seq, const unsigned char* __restrict__ mask, S* __restrict__ grad_x,
    float* __restrict__ grad_v0, long long n_neurons, int steps, float beta, float tau, float v_threshold,
    int decay_input, int detach_reset) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long n_packs = n_neurons / VEC;
    for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < n_packs; g += stride) {
        const long long n = g * VEC;
        float carry[VEC];  // dL/dV[t], flowing back from step t + 1
        Pack<unsigned char, VEC> bits;
        Pack<float, VEC> g_last;
        if (grad_v_last) g_last = load_pack<float, VEC>(grad_v_last + n);
#pragma unroll
        for (int k = 0; k < VEC; ++k) carry[k] = 0.0f;
#pragma unroll 4
        for (int t = steps - 1; t >= 0; --t) {
            const long long i = (long long)t * n_neurons + n;
            if (t == steps - 1 || (t & 7) == 7)
                bits = load_pack<unsigned char, VEC>(mask + (long long)(t >> 3) * n_neurons + n);
            const Pack<S, VEC> g_in = load_pack<S, VEC>(grad_spikes + i);
            Pack<float, VEC> g_seq;
            if (grad_v_seq) g_seq = load_pack<float, VEC>(grad_v_seq + i);
            Pack<S, VEC> g_out;
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                float grad_v = carry[k];
                if (grad_v_seq) grad_v = grad_v + g_seq.v[k];
                if (grad_v_last && t == steps - 1) grad_v = grad_v + g_last.v[k];
                float grad_level = load_value(&g_in.v[k]);
                if (v_threshold != 1.0f) grad_level = grad_level / v_threshold;
                const bool in_window = (bits.v[k] >> (t & 7)) & 1u;
                // dV/dH is 1 with a detached reset, else 1 - m.
                const float grad_h = detach_reset ? (in_window ? grad_level : 0.0f) + grad_v
                                                  : (in_window ? grad_level : grad_v);
                float grad_xt;
                if (decay_input) {
                    grad_xt = grad_h / tau;
                    carry[k] = grad_h - grad_xt;
                } else {
                    grad_xt = grad_h;
                    carry[k] = grad_h * beta;
                }
                store_value(&g_out.v[k], grad_xt);
            }
            store_pack<S, VEC>(grad_x + i, g_out);
        }
        if (grad_v0) {
            Pack<float, VEC> g0;
#pragma unroll
            for (int k = 0; k < VEC; ++k) g0.v[k] = carry[k];
            store_pack<float, VEC>(grad_v0 + n, g0);
        }
    }
}

// One pair of kernels per dtype and width: SUFFIX names them (ilif_forward_f32, ilif_forward_f32_v4...).
#define ILIF_KERNELS(SUFFIX, S, VEC)                                                                       \
    extern "C" __global__ void ilif_forward_##SUFFIX(                                                     \
        const S* x, const float* v0, S* spikes, unsigned char* mask, float* v_last, float* v_seq,         \
        long long n_neurons, int steps, float beta, float tau, float v_threshold, float max_level,         \
        int decay_input) {                                                                                 \
        ilif_forward_impl<S, VEC>(x, v0, spikes, mask, v_last, v_seq, n_neurons, steps, beta, tau,         \
                                  v_threshold, max_level, decay_input);                                    \
    }                                                                                                      \
    extern "C" __global__ void ilif_backward_##SUFFIX(                                                    \
        const S* grad_spikes, const float* grad_v_last, const float* grad_v_seq, const unsigned char* mask, \
        S* grad_x, float* grad_v0, long long n_neurons, int steps, float beta, float tau,                  \
        float v_threshold, int decay_input, int detach_reset) {                                            \
        ilif_backward_impl<S, VEC>(grad_spikes, grad_v_last, grad_v_seq, mask, grad_x, grad_v0,           \
                                   n_neurons, steps, beta, tau, v_threshold, decay_input, detach_reset);   \
    }

ILIF_KERNELS(f32, float, 1)
ILIF_KERNELS(f16, Half, 1)
ILIF_KERNELS(bf16, BFloat16, 1)
ILIF_KERNELS(f32_v4, float, 4)
ILIF_KERNELS(f16_v4, Half, 4)
ILIF_KERNELS(bf16_v4, BFloat16, 4)
ILIF_KERNELS(f16_v8, Half, 8)
ILIF_KERNELS(bf16_v8, BFloat16, 8)
