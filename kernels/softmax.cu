// softmax.cu -- row-wise softmax and its backward pass.
//
//     y[r, k]  = exp(x[r, k] - m_r) / sum_k' exp(x[r, k'] - m_r),   m_r = max_k x[r, k]
//     gx[r, k] = y[r, k] * (gy[r, k] - sum_k' y[r, k'] * gy[r, k'])
//
// Subtracting the row maximum changes nothing mathematically (it cancels in
// the ratio) but keeps exp() from overflowing: the largest term is exp(0) = 1.
//
// Layout: x, y, gy, gx are (rows, cols), C-contiguous; a row is contiguous.
// minigan/ops/softmax.py moves the softmax axis last and flattens the rest,
// so self-attention's (N, HW, HW) scores arrive as (N*HW, HW).
//
// Launch: ONE WARP PER ROW, 8 warps (256 threads) per block, grid-stride over
// rows. The 32 lanes stride along the row together, so every load is one
// coalesced 128-byte transaction (float), and the row's max and sum are
// combined with register shuffles alone: no shared memory, no __syncthreads.
// minigan's rows are attention rows of 16..4096 entries, where a warp has
// enough work per lane; a block per row would leave most of its threads idle
// on 16-entry rows and pay block-wide synchronisation on every row.
//
// Forward is three sweeps over the row: max, sum of exponentials, write. The
// row is re-read from L1/L2, not DRAM, for the rows minigan sees. A faster
// version would fuse the first two sweeps with the "online softmax" rescaling
// trick (Milakov & Gimelshein, 2018).
//
// CPU twin: minigan/backend/cpu.py::softmax_forward / softmax_backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

#define WARPS_PER_BLOCK (MINIGAN_BLOCK / 32)

// Row r of the grid-stride loop for this warp; the loop bound is the same for
// all 32 lanes, so the whole warp enters and leaves together and the
// full-mask shuffles inside are safe.
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
