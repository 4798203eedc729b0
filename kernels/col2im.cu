// col2im.cu -- the adjoint of im2col: fold columns back onto the images,
// SUMMING the entries that came from the same pixel.
//
//     x[n, c, y, xx] = sum of cols[(c*KH + i)*KW + j, (n*OH + oy)*OW + ox]
//                      over every (i, j, oy, ox) with oy*SH - PH + i == y
//                                                 and ox*SW - PW + j == xx
//
// Layout (row-major, C-contiguous):
//     cols  (C*KH*KW, N*OH*OW)
//     x     (N, C, H, W)
//
// Launch: one thread per image pixel (n, c, y, xx) -- N*C*H*W threads in
// blocks of 256, grid-stride, xx fastest, so the stores to x are coalesced.
//
// Why a gather and not a scatter? The scatter version (one thread per column
// entry, `atomicAdd(&x[...], v)`) is the literal transpose of im2col, but
// overlapping windows make many threads add into the same pixel: atomics
// serialise, float atomics make the summation order (and so the last bits of
// the result) change from run to run, and double atomicAdd needs sm_60+.
// Here each pixel asks instead "which (oy, ox) windows cover me?", and its
// thread sums exactly those entries in a fixed order: no two threads write
// the same address, no atomics, bitwise reproducible.
//
// Which windows cover row y? Window oy starts at oy*SH - PH and spans KH rows,
// so it covers y iff 0 <= y + PH - oy*SH < KH, i.e.
//     (y + PH - KH) / SH < oy <= (y + PH) / SH,   clipped to [0, OH).
// Iterating that range directly (as Caffe's col2im does) visits only the
// ~KH/SH windows that matter instead of testing all KH positions with a
// modulo. The same holds for columns.
//
// Coalescing of the reads: for stride 1, neighbouring threads (xx, xx+1)
// read neighbouring ox of the same cols row; for larger strides the reads
// are strided, which L1/L2 absorb since every entry is read exactly once.
//
// Also the forward pass of conv_transpose2d (minigan/ops/conv.py), which
// passes its OUTPUT as the "image"; with output_padding some image rows are
// covered by no window and correctly come out 0.
//
// Limits: flat indices and offsets are 64-bit; a row of cols (N*OH*OW) and
// an image plane (H*W) must fit an int (cuda.py checks).
//
// CPU twin: minigan/backend/cpu.py::col2im. Test: tests/kernels/test_parity.py
// (plus the adjoint identity <im2col(x), c> == <x, col2im(c)> in
// tests/kernels/test_cpu_kernels.py). Benchmark: benchmarks/bench_kernels.py.
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
        // First and one-past-last window covering this pixel, per axis.
        const int oy_begin = yp < KH ? 0 : (yp - KH) / SH + 1;
        const int oy_end = min(yp / SH + 1, OH);
        const int ox_begin = xp < KW ? 0 : (xp - KW) / SW + 1;
        const int ox_end = min(xp / SW + 1, OW);
        // Row (c*KH + 0)*KW + 0 of cols, at image n's first column.
        const T* __restrict__ base = cols + (index_t)c * KH * KW * row_length + (index_t)n * OHW;
        T acc = T(0);
        for (int oy = oy_begin; oy < oy_end; ++oy) {
            const int i = yp - oy * SH;  // 0 <= i < KH by the choice of the range
            for (int ox = ox_begin; ox < ox_end; ++ox) {
                const int j = xp - ox * SW;
                acc += __ldg(base + (index_t)(i * KW + j) * row_length + oy * OW + ox);
            }
        }
        x[idx] = acc;
    }
}
