// im2col.cu -- lay every receptive field of a batch of images out as a
// column, so that a convolution becomes ONE matrix product (cuBLAS):
//
//     y (OC, N*OH*OW) = W (OC, C*KH*KW) @ cols (C*KH*KW, N*OH*OW)
//
// Layout (row-major, C-contiguous):
//     x     (N, C, H, W)
//     cols  (C*KH*KW, N*OH*OW)
//     cols[(c*KH + i)*KW + j, (n*OH + oy)*OW + ox] = x[n, c, oy*SH - PH + i, ox*SW - PW + j]
//                                                    (0 where that falls in the padding)
// The whole batch sits side by side along the columns, so even the 4x4
// layers of a batch of 5 make one GEMM big enough to keep the GPU busy.
// kernels/README.md draws this index map.
//
// Launch: one thread per (c, n, oy, ox) -- C*N*OH*OW threads in blocks of
// 256, grid-stride -- and each thread loops over the KH*KW window positions,
// writing one element into each of its KH*KW rows of cols.
//   * Coalescing: the thread index runs in the order of a cols row,
//     q = (n*OH + oy)*OW + ox fastest, so the 32 threads of a warp write 32
//     consecutive elements of a row (one coalesced store per (i, j)) and,
//     for stride 1, read 32 consecutive pixels of an image row.
//   * Why not one thread per element of cols? cols is KH*KW times larger
//     than x; decoding a 6-D index per element costs more integer divisions
//     than the copy itself. Here the index is decoded once per thread, and
//     the KH*KW reads of neighbouring threads overlap, so they mostly hit L1.
//
// Limits: the flat thread index and tensor offsets are 64-bit; a row of
// cols (N*OH*OW) must fit an int (cuda.py checks).
//
// CPU twin: minigan/backend/cpu.py::im2col. Test: tests/kernels/test_parity.py
// (and the NumPy reference in tests/kernels/test_cpu_kernels.py). Benchmark:
// benchmarks/bench_kernels.py. Used by conv2d forward and conv_transpose2d
// backward (minigan/ops/conv.py).
#include "common.cuh"

template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x,   // (N, C, H, W)
                              T* __restrict__ cols,      // (C*KH*KW, N*OH*OW)
                              index_t total,             // C*N*OH*OW: one thread each
                              int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                              int PH, int PW, int OH, int OW) {
    const int OHW = OH * OW, row_length = N * OHW;
    GRID_STRIDE_LOOP(idx, total) {
        const int c = (int)(idx / row_length);
        const int q = (int)(idx - (index_t)c * row_length);  // column: (n*OH + oy)*OW + ox
        const int n = q / OHW, p = q - n * OHW;
        const int oy = p / OW, ox = p - oy * OW;
        const int y0 = oy * SH - PH, x0 = ox * SW - PW;  // top-left corner of the window
        const T* __restrict__ plane = x + ((index_t)n * C + c) * H * W;
        T* __restrict__ out = cols + (index_t)c * KH * KW * row_length + q;  // row (c*KH + 0)*KW + 0
        for (int i = 0; i < KH; ++i) {
            const int y = y0 + i;
            const bool row_inside = (unsigned)y < (unsigned)H;  // 0 <= y < H in one compare
            for (int j = 0; j < KW; ++j) {
                const int xx = x0 + j;
                *out = (row_inside && (unsigned)xx < (unsigned)W) ? __ldg(plane + (index_t)y * W + xx) : T(0);
                out += row_length;  // the next row of cols: (c*KH + i)*KW + j + 1
            }
        }
    }
}
