// common.cuh -- the helpers every kernel shares: index_t, the grid-stride
// loop, float/double math overloads, warp and block reductions.
//
// Layout: none of its own. Launch: MINIGAN_BLOCK threads per block, the same
// value as cuda.py's BLOCK. How this header reaches NVRTC and why no standard
// header is included: kernels/README.md, "From this folder to the GPU".
// CPU twin: none (cpu.py needs no helpers). Test: tests/kernels/test_compile.py
// (through every kernel file). Benchmark: through every kernel.
#ifndef MINIGAN_COMMON_CUH
#define MINIGAN_COMMON_CUH

// 64-bit flat indices: N*C*H*W or an im2col buffer can pass 2^31 elements.
typedef long long index_t;

#define MINIGAN_BLOCK 256

__host__ __device__ __forceinline__ index_t ceil_div(index_t n, index_t per_block) {
    return (n + per_block - 1) / per_block;
}

// Thread t handles t, t + G, t + 2G, ... (G threads in the grid): any grid
// size covers any n, and neighbouring threads stay on neighbouring elements.
#define GRID_STRIDE_LOOP(i, n)                                                   \
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);   \
         i += (index_t)blockDim.x * gridDim.x)

// Explicit float overloads, so a float kernel is never promoted to double.
__device__ __forceinline__ float  math_exp(float x)   { return expf(x); }
__device__ __forceinline__ double math_exp(double x)  { return exp(x); }
__device__ __forceinline__ float  math_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double math_expm1(double x){ return expm1(x); }
__device__ __forceinline__ float  math_tanh(float x)  { return tanhf(x); }
__device__ __forceinline__ double math_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float  math_sqrt(float x)  { return sqrtf(x); }
__device__ __forceinline__ double math_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float  math_max(float a, float b)   { return fmaxf(a, b); }
__device__ __forceinline__ double math_max(double a, double b) { return fmax(a, b); }

// Reductions use full-mask shuffles: every lane of the warp must take part.
struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return math_max(a, b); }
};

// xor shuffles leave the result in every lane: no broadcast step.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) { return warp_reduce(v, SumOp()); }
template <typename T> __device__ __forceinline__ T warp_max(T v) { return warp_reduce(v, MaxOp()); }

// Sum over the block, returned to every thread: warp sums -> 32 shared slots
// -> every warp reduces the slots itself.
template <typename T>
__device__ T block_sum(T v) {
    __shared__ T partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n_warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // a previous call's slots may still be read by a slow warp
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    return warp_sum(lane < n_warps ? partial[lane] : T(0));
}

#endif  // MINIGAN_COMMON_CUH
