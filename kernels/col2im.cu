// col2im.cu -- the adjoint of im2col: fold cols back onto the images,
// summing the entries that were copied from the same pixel.
//
// Layout: cols (C*KH*KW, N*OH*OW) -> x (N, C, H, W), C-contiguous; the index
// map is im2col's (kernels/README.md). Also conv_transpose2d's forward, with
// its output as the "image".
// Launch: one thread per pixel (n, c, y, xx), xx fastest, blocks of 256,
// grid-stride: a gather, so no atomics and a fixed summation order
// (kernels/README.md, "col2im: a gather, so no atomics").
// CPU twin: minigan/backend/cpu.py::col2im. Test: tests/kernels/test_parity.py.
// Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols,  // (C*KH*KW, N*OH*OW)
                              T* __restrict__ x,           // (N, C, H, W)
                              index_t total,               // N*C*H*W: one thread each
                              int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                              int PH, int PW, int OH, int OW) {
    const int HW = H * W, OHW = OH * OW;
    const index_t row_length = (index_t)N * OHW;
    GRID_STRIDE_LOOP(idx, total) {
        const index_t nc = idx / HW;  // n*C + c
        const int p = (int)(idx - nc * HW);
        const int n = (int)(nc / C), c = (int)(nc - (index_t)n * C);
        const int yp = p / W + PH, xp = p % W + PW;  // position in the padded image
        // The windows covering this pixel: (yp - KH)/SH < oy <= yp/SH, clipped to [0, OH).
        const int oy_begin = yp < KH ? 0 : (yp - KH) / SH + 1;
        const int oy_end = min(yp / SH + 1, OH);
        const int ox_begin = xp < KW ? 0 : (xp - KW) / SW + 1;
        const int ox_end = min(xp / SW + 1, OW);
        const T* __restrict__ base = cols + (index_t)c * KH * KW * row_length + (index_t)n * OHW;
        T acc = T(0);
        for (int oy = oy_begin; oy < oy_end; ++oy) {
            const int i = yp - oy * SH;  // 0 <= i < KH by the choice of the range
            for (int ox = ox_begin; ox < ox_end; ++ox) {
                const int j = xp - ox * SW;
                acc += __ldg(base + (index_t)(i * KW + j) * row_length + oy * OW + ox);
            }
        }
        x[idx] = acc;  // rows no window covers (output_padding) come out 0
    }
}
