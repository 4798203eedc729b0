// activations.cu -- elementwise activations and their gradients.
//
//     kind  name        y = f(x)                         gx = gy * f'(x), from x or y
//     0     relu        max(x, 0)                        gy * (x > 0)
//     1     leaky_relu  x > 0 ? x : alpha*x              gy * (x > 0 ? 1 : alpha)
//     2     elu         x > 0 ? x : alpha*(exp(x) - 1)   gy * (x > 0 ? 1 : y + alpha)
//     3     tanh        tanh(x)                          gy * (1 - y^2)
//     4     sigmoid     1 / (1 + exp(-x))                gy * y * (1 - y)
//
// The kind codes are minigan/backend/cpu.py's RELU..SIGMOID (ACTIVATIONS).
// The backward pass reuses the saved output y where that is cheaper than
// recomputing f'(x) (tanh, sigmoid, elu): one load instead of an exp.
//
// Layout: every array is treated as flat (n,), C-contiguous; shape does not
// matter for an elementwise map.
//
// Launch: one thread per element, blocks of 256, grid-stride. `kind` is the
// same for every thread, so the switch never diverges inside a warp; one
// kernel per direction serves all five activations instead of ten kernels.
// These kernels are pure bandwidth: 8 bytes moved per float forward, 16
// backward; the benchmark reports GB/s against the device's peak.
//
// Numerics: elu uses expm1 (exact near 0 where exp(x) - 1 cancels); sigmoid
// picks the form whose exp cannot overflow: 1/(1+exp(-x)) for x >= 0,
// exp(x)/(1+exp(x)) for x < 0.
//
// CPU twin: minigan/backend/cpu.py::activation_forward / activation_backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

enum ActivationKind { RELU = 0, LEAKY_RELU = 1, ELU = 2, TANH = 3, SIGMOID = 4 };

template <typename T>
__device__ __forceinline__ T activate(T v, int kind, T alpha) {
    switch (kind) {
        case RELU:       return v <= T(0) ? T(0) : v;  // NaN <= 0 is false: NaN propagates
        case LEAKY_RELU: return v > T(0) ? v : alpha * v;
        case ELU:        return v > T(0) ? v : alpha * math_expm1(v);
        case TANH:       return math_tanh(v);
        default: {       // SIGMOID
            const T e = math_exp(v >= T(0) ? -v : v);  // in (0, 1]: never overflows
            return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        }
    }
}

// f'(x) * gy, given the input x and the output y = f(x).
template <typename T>
__device__ __forceinline__ T activate_grad(T v, T out, T g, int kind, T alpha) {
    switch (kind) {
        case RELU:       return v > T(0) ? g : T(0);
        case LEAKY_RELU: return v > T(0) ? g : alpha * g;
        case ELU:        return v > T(0) ? g : g * (out + alpha);
        case TANH:       return g * (T(1) - out * out);
        default:         return g * out * (T(1) - out);  // SIGMOID
    }
}

template <typename T>
__global__ void activation_forward_kernel(const T* __restrict__ x,  // (n,)
                                          T* __restrict__ y,        // (n,)
                                          index_t n, int kind, T alpha) {
    GRID_STRIDE_LOOP(i, n) y[i] = activate(x[i], kind, alpha);
}

template <typename T>
__global__ void activation_backward_kernel(const T* __restrict__ x,   // (n,)
                                           const T* __restrict__ y,   // (n,)
                                           const T* __restrict__ gy,  // (n,)
                                           T* __restrict__ gx,        // (n,)
                                           index_t n, int kind, T alpha) {
    GRID_STRIDE_LOOP(i, n) gx[i] = activate_grad(x[i], y[i], gy[i], kind, alpha);
}
