// batchnorm.cu -- training-mode batch normalisation, forward and backward.
//
// Per channel c, over the count = N*H*W values x[:, c, :, :]:
//     mean[c]   = sum(x) / count
//     invstd[c] = 1 / sqrt(sum((x - mean)^2) / count + eps)     (biased variance)
//     y         = gamma[c] * (x - mean) * invstd + beta[c]
// Backward, with xhat = (x - mean) * invstd:
//     gbeta[c]  = sum(gy)
//     ggamma[c] = sum(gy * xhat)
//     gx        = gamma * invstd * (gy - gbeta/count - xhat * ggamma/count)
//
// Layout:
//     x, y, gy, gx            (N, C, H, W)
//     gamma, beta, mean,
//     invstd, ggamma, gbeta   (C,)
// Channel c's values sit in N runs of H*W contiguous elements, one run per
// image, H*W*C elements apart.
//
// Launch: one block of 256 threads per channel (grid = C). The block walks
// its channel's count values with a block-stride loop over the flat index
// k = n*HW + hw (so adjacent threads read adjacent pixels: coalesced), keeps
// a private partial sum, and the block reduces the partials (warp shuffles,
// then 32 shared-memory slots: common.cuh::block_sum). One block per channel
// means no atomics, no second kernel, and a fixed summation order: the
// statistics are bitwise reproducible. The price: with few channels and huge
// N*H*W the GPU has fewer blocks than SMs; a next version would split each
// channel over several blocks and combine their partials in a second pass.
//
// Numerics: the mean and the variance are computed in two passes (first the
// mean, then the sum of squared deviations from it), both accumulated in
// DOUBLE, for float and double inputs alike. The one-pass formula
// E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std; two passes
// over data that is already in L2 cost little, and double accumulators keep
// a float32 sum of 10^6 values accurate to float32 precision. The backward
// pass's elementwise gx runs in T: x - mean is exact for x near the mean
// (Sterbenz) and only rounds where |x - mean| is large anyway.
//
// CPU twin: minigan/backend/cpu.py::batchnorm_forward / batchnorm_backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
// Op: minigan/ops/norm.py (BatchNorm2d).
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
    // y = x * scale + shift: one fused multiply-add per element, in double
    // because x * scale and shift nearly cancel when |mean| >> std.
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
    // gx = a * (gy - mean(gy) - xhat * mean(gy * xhat)): subtracting means
    // (not count*gy - sum) keeps the float32 terms of similar size.
    const T a = (T)((double)gamma[c] * (double)inv);
    const T mean_g = (T)(sum_g / count), mean_gxhat = (T)(sum_gxhat / count);
    for (int k = threadIdx.x; k < count; k += blockDim.x) {
        const index_t o = channel_offset(k, c, C, HW);
        const T xhat = (x[o] - mu) * inv;
        gx[o] = a * (gy[o] - mean_g - xhat * mean_gxhat);
    }
}
