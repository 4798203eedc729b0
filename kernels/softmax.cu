// softmax.cu -- row-wise softmax (max-subtracted: exp never overflows) and
// its backward pass.
//
//     y[r, k]  = exp(x[r, k] - max_k' x[r, k']) / sum_k' exp(x[r, k'] - max)
//     gx[r, k] = y[r, k] * (gy[r, k] - sum_k' y[r, k'] * gy[r, k'])
//
// Layout: x, y, gy, gx (rows, cols), C-contiguous (ops/softmax.py moves the
// axis last: attention's (N, HW, HW) arrives as (N*HW, HW)).
// Launch: one warp per row, 8 warps per 256-thread block, grid-stride over
// rows; max and sum by shuffles alone (why: kernels/README.md, "softmax.cu").
// CPU twin: minigan/backend/cpu.py::softmax_forward / softmax_backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

#define WARPS_PER_BLOCK (MINIGAN_BLOCK / 32)

// All 32 lanes share the bound, so the full-mask shuffles inside are safe.
#define ROW_LOOP(r, rows)                                                                  \
    for (index_t r = (index_t)blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5); r < (rows); \
         r += (index_t)gridDim.x * WARPS_PER_BLOCK)

template <typename T>
__global__ void softmax_forward_kernel(const T* __restrict__ x,  // (rows, cols)
                                       T* __restrict__ y,        // (rows, cols)
                                       index_t rows, int cols) {
    const int lane = threadIdx.x & 31;
    ROW_LOOP(r, rows) {
        const T* __restrict__ xr = x + r * cols;
        T* __restrict__ yr = y + r * cols;
        T m = xr[0];  // any element of the row is a valid starting maximum
        for (int k = lane; k < cols; k += 32) m = math_max(m, xr[k]);
        m = warp_max(m);
        T s = T(0);
        for (int k = lane; k < cols; k += 32) s += math_exp(xr[k] - m);
        const T inv = T(1) / warp_sum(s);
        for (int k = lane; k < cols; k += 32) yr[k] = math_exp(xr[k] - m) * inv;
    }
}

template <typename T>
__global__ void softmax_backward_kernel(const T* __restrict__ y,   // (rows, cols)
                                        const T* __restrict__ gy,  // (rows, cols)
                                        T* __restrict__ gx,        // (rows, cols)
                                        index_t rows, int cols) {
    const int lane = threadIdx.x & 31;
    ROW_LOOP(r, rows) {
        const T* __restrict__ yr = y + r * cols;
        const T* __restrict__ gyr = gy + r * cols;
        T dot = T(0);
        for (int k = lane; k < cols; k += 32) dot += yr[k] * gyr[k];
        dot = warp_sum(dot);
        for (int k = lane; k < cols; k += 32) gx[r * cols + k] = yr[k] * (gyr[k] - dot);
    }
}
