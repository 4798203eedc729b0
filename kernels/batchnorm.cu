// batchnorm.cu -- training-mode batch norm, forward and backward, per
// channel c over its count = N*H*W values:
//
//     mean = sum(x) / count,   invstd = 1 / sqrt(sum((x - mean)^2) / count + eps)
//     y = gamma * (x - mean) * invstd + beta,   xhat = (x - mean) * invstd
//     gbeta = sum(gy),   ggamma = sum(gy * xhat)
//     gx = gamma * invstd * (gy - gbeta/count - xhat * ggamma/count)
//
// Layout: x, y, gy, gx (N, C, H, W); gamma, beta, mean, invstd, ggamma,
// gbeta (C,). Channel c is N runs of H*W contiguous values.
// Launch: one block of 256 threads per channel (grid = C), block-stride over
// k = n*HW + hw, reduced with common.cuh::block_sum: no atomics, a fixed
// order. Why two passes in double: kernels/README.md, "batchnorm.cu".
// CPU twin: minigan/backend/cpu.py::batchnorm_forward / batchnorm_backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

// Offset of the k-th value (k = n*HW + hw) of channel c in an (N, C, HW) tensor.
__device__ __forceinline__ index_t channel_offset(int k, int c, int C, int HW) {
    const int n = k / HW;
    return ((index_t)n * C + c) * HW + (k - n * HW);
}

template <typename T>
__global__ void batchnorm_forward_kernel(const T* __restrict__ x,      // (N, C, H, W)
                                         const T* __restrict__ gamma,  // (C,)
                                         const T* __restrict__ beta,   // (C,)
                                         T* __restrict__ y,            // (N, C, H, W)
                                         T* __restrict__ mean,         // (C,)
                                         T* __restrict__ invstd,       // (C,)
                                         int N, int C, int HW, T eps) {
    const int c = blockIdx.x;
    const int count = N * HW;  // cuda.py checks that it fits an int

    double sum = 0.0;
    for (int k = threadIdx.x; k < count; k += blockDim.x) sum += (double)x[channel_offset(k, c, C, HW)];
    const double mu = block_sum(sum) / count;

    double sq = 0.0;
    for (int k = threadIdx.x; k < count; k += blockDim.x) {
        const double d = (double)x[channel_offset(k, c, C, HW)] - mu;
        sq += d * d;
    }
    const double inv = 1.0 / sqrt(block_sum(sq) / count + (double)eps);

    if (threadIdx.x == 0) {
        mean[c] = (T)mu;
        invstd[c] = (T)inv;
    }
    // In double: x * scale and shift nearly cancel when |mean| >> std.
    const double scale = (double)gamma[c] * inv, shift = (double)beta[c] - mu * scale;
    for (int k = threadIdx.x; k < count; k += blockDim.x) {
        const index_t o = channel_offset(k, c, C, HW);
        y[o] = (T)((double)x[o] * scale + shift);
    }
}

template <typename T>
__global__ void batchnorm_backward_kernel(const T* __restrict__ x,       // (N, C, H, W)
                                          const T* __restrict__ gy,      // (N, C, H, W)
                                          const T* __restrict__ gamma,   // (C,)
                                          const T* __restrict__ mean,    // (C,)
                                          const T* __restrict__ invstd,  // (C,)
                                          T* __restrict__ gx,            // (N, C, H, W)
                                          T* __restrict__ ggamma,        // (C,)
                                          T* __restrict__ gbeta,         // (C,)
                                          int N, int C, int HW) {
    const int c = blockIdx.x;
    const int count = N * HW;
    const T mu = mean[c], inv = invstd[c];

    // One pass gives both sums: they read the same elements.
    double sum_g = 0.0, sum_gxhat = 0.0;
    for (int k = threadIdx.x; k < count; k += blockDim.x) {
        const index_t o = channel_offset(k, c, C, HW);
        const double g = (double)gy[o];
        sum_g += g;
        sum_gxhat += g * (((double)x[o] - (double)mu) * (double)inv);
    }
    sum_g = block_sum(sum_g);
    sum_gxhat = block_sum(sum_gxhat);
    if (threadIdx.x == 0) {
        gbeta[c] = (T)sum_g;
        ggamma[c] = (T)sum_gxhat;
    }
    // Means, not count*gy - sum: the float32 terms stay of similar size.
    const T a = (T)((double)gamma[c] * (double)inv);
    const T mean_g = (T)(sum_g / count), mean_gxhat = (T)(sum_gxhat / count);
    for (int k = threadIdx.x; k < count; k += blockDim.x) {
        const index_t o = channel_offset(k, c, C, HW);
        const T xhat = (x[o] - mu) * inv;
        gx[o] = a * (gy[o] - mean_g - xhat * mean_gxhat);
    }
}
