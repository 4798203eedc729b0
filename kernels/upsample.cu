// upsample.cu -- nearest-neighbour upsampling by an integer factor s (BEGAN's
// decoder), and its backward pass.
//
//     forward:   y[n, c, oy, ox] = x[n, c, oy / s, ox / s]
//     backward:  gx[n, c, i, j]  = sum over a, b < s of gy[n, c, i*s + a, j*s + b]
//
// Layout: x, gx (N, C, H, W); y, gy (N, C, OH, OW), OH = H*s forward; the
// backward takes gy's own OH, OW and H = OH / s (rows past H*s are dropped).
// Launch: one thread per OUTPUT element in both directions, blocks of 256,
// grid-stride: a gather, so the backward needs no atomics.
// CPU twin: minigan/backend/cpu.py::upsample_nearest_forward / _backward.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

template <typename T>
__global__ void upsample_nearest_forward_kernel(const T* __restrict__ x,  // (N, C, H, W)
                                                T* __restrict__ y,        // (N, C, OH, OW) = (N, C, H*s, W*s)
                                                index_t total,            // N*C*OH*OW
                                                int H, int W, int OH, int OW, int s) {
    GRID_STRIDE_LOOP(idx, total) {
        const index_t nc = idx / ((index_t)OH * OW);
        const int p = (int)(idx - nc * OH * OW);
        const int oy = p / OW, ox = p - (p / OW) * OW;
        y[idx] = __ldg(x + (nc * H + oy / s) * W + ox / s);
    }
}

template <typename T>
__global__ void upsample_nearest_backward_kernel(const T* __restrict__ gy,  // (N, C, OH, OW)
                                                 T* __restrict__ gx,        // (N, C, H, W)
                                                 index_t total,             // N*C*H*W
                                                 int H, int W, int OH, int OW, int s) {
    GRID_STRIDE_LOOP(idx, total) {
        const index_t nc = idx / ((index_t)H * W);
        const int p = (int)(idx - nc * H * W);
        const int i = p / W, j = p - (p / W) * W;
        const T* __restrict__ block = gy + (nc * OH + (index_t)i * s) * OW + (index_t)j * s;
        T acc = T(0);
        for (int a = 0; a < s; ++a)
            for (int b = 0; b < s; ++b) acc += block[(index_t)a * OW + b];
        gx[idx] = acc;
    }
}
