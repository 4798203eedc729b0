// im2col.cu -- every receptive field of a batch of images as one column of
// cols, so that a convolution is ONE matrix product W @ cols.
//
// Layout: x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW), C-contiguous; the index
// map is drawn in kernels/README.md, "im2col: which input pixel lands where".
// Launch: one thread per (c, n, oy, ox), ox fastest, blocks of 256,
// grid-stride; each thread writes its KH*KW rows of one column.
// CPU twin: minigan/backend/cpu.py::im2col. Test: tests/kernels/test_parity.py.
// Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x,   // (N, C, H, W)
                              T* __restrict__ cols,      // (C*KH*KW, N*OH*OW)
                              index_t total,             // C*N*OH*OW: one thread each
                              int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                              int PH, int PW, int OH, int OW) {
    const int OHW = OH * OW, row_length = N * OHW;
    GRID_STRIDE_LOOP(idx, total) {
        // One decode per thread, not per element of cols (KH*KW times fewer divisions).
        const int c = (int)(idx / row_length);
        const int q = (int)(idx - (index_t)c * row_length);  // column: (n*OH + oy)*OW + ox
        const int n = q / OHW, p = q - n * OHW;
        const int oy = p / OW, ox = p - oy * OW;
        const int y0 = oy * SH - PH, x0 = ox * SW - PW;  // im2col index map: the window's top-left pixel
        const T* __restrict__ plane = x + ((index_t)n * C + c) * H * W;
        T* __restrict__ out = cols + (index_t)c * KH * KW * row_length + q;  // row (c*KH + 0)*KW + 0
        for (int i = 0; i < KH; ++i) {
            const int y = y0 + i;
            const bool row_inside = (unsigned)y < (unsigned)H;  // 0 <= y < H in one compare
            for (int j = 0; j < KW; ++j) {
                const int xx = x0 + j;
                *out = (row_inside && (unsigned)xx < (unsigned)W) ? __ldg(plane + (index_t)y * W + xx) : T(0);
                out += row_length;  // warp-neighbours write neighbouring columns: coalesced
            }
        }
    }
}
