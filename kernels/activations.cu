// activations.cu -- elementwise activations and their gradients, one kernel
// per direction for all kinds (a uniform switch: no divergence in a warp).
//
//     kind        y = f(x)                         gx = gy * f'(x), from x or y
//     relu        max(x, 0)                        gy * (x > 0)
//     leaky_relu  x > 0 ? x : alpha*x              gy * (x > 0 ? 1 : alpha)
//     elu         x > 0 ? x : alpha*(exp(x) - 1)   gy * (x > 0 ? 1 : y + alpha)
//     tanh        tanh(x)                          gy * (1 - y^2)
//     sigmoid     1 / (1 + exp(-x))                gy * y * (1 - y)
//
// Layout: x, y, gy, gx flat (n,), C-contiguous.
// Launch: one thread per element, blocks of 256, grid-stride.
// CPU twin: minigan/backend/cpu.py::activation_forward / activation_backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

// The codes of minigan/backend/cpu.py::ACTIVATIONS (tests/kernels/test_sources.py checks).
enum ActivationKind { RELU = 0, LEAKY_RELU = 1, ELU = 2, TANH = 3, SIGMOID = 4 };

template <typename T>
__device__ __forceinline__ T activate(T v, int kind, T alpha) {
    switch (kind) {
        case RELU:       return v <= T(0) ? T(0) : v;  // NaN <= 0 is false: NaN propagates
        case LEAKY_RELU: return v > T(0) ? v : alpha * v;
        case ELU:        return v > T(0) ? v : alpha * math_expm1(v);  // exact near 0
        case TANH:       return math_tanh(v);
        default: {       // SIGMOID
            const T e = math_exp(v >= T(0) ? -v : v);  // in (0, 1]: never overflows
            return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        }
    }
}

// From the saved y where that saves an exp (elu, tanh, sigmoid).
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
