// common.cuh -- the few helpers every minigan kernel shares.
//
// Read this first (kernels/README.md gives the whole reading order). Every
// kernel in kernels/*.cu is a template over its element type T, instantiated
// for float and double by minigan/backend/cuda.py (CuPy RawModule with
// name_expressions such as "im2col_kernel<float>"), so the float64 gradient
// checks in tests/gradcheck run on the GPU with the very same kernels.
//
// How this file reaches the compiler: cuda.py pastes its text in place of the
// `#include "common.cuh"` line before handing a kernel file to NVRTC. CuPy's
// on-disk kernel cache is keyed by the source text, so a header that NVRTC
// read from disk on its own would not be part of that key and an edited
// header could be silently ignored. nvcc (tests/kernels/test_compile.py)
// resolves the #include the ordinary way.
//
// No standard headers are included on purpose: NVRTC has the CUDA math
// functions and intrinsics built in, and nothing else is needed.
#ifndef MINIGAN_COMMON_CUH
#define MINIGAN_COMMON_CUH

// Index arithmetic. Single dimensions (H, W, C, KH, ...), image planes (H*W)
// and rows of the im2col matrix (N*OH*OW) fit in a 32-bit int (cuda.py
// checks), but products such as N*C*H*W or the size of an im2col buffer can
// pass 2^31 on a large GPU, so every flat index and every offset into a
// tensor is a 64-bit `index_t`.
typedef long long index_t;

// Threads per block for every 1-D launch. 256 is a multiple of the 32-thread
// warp, small enough that several blocks fit on one SM at once (latency hiding)
// and large enough to amortise the per-block cost. cuda.py uses the same value.
#define MINIGAN_BLOCK 256

// Blocks needed to give n items one thread each (cuda.py's grid_size is the
// host-side twin, which also caps the grid).
__host__ __device__ __forceinline__ index_t ceil_div(index_t n, index_t per_block) {
    return (n + per_block - 1) / per_block;
}

// Grid-stride loop: thread t of the grid handles t, t + G, t + 2G, ... where G
// is the number of threads in the grid. The launch can then use a capped grid
// (cuda.py: MAX_BLOCKS) for any problem size, and adjacent threads still touch
// adjacent elements on every trip (coalesced).
#define GRID_STRIDE_LOOP(i, n)                                                   \
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);   \
         i += (index_t)blockDim.x * gridDim.x)

// ---------------------------------------------------------------------------
// float / double overloads of the math the kernels use. Spelling out expf vs
// exp keeps a float kernel from being promoted to double by accident (which
// would be correct but up to 64x slower on consumer GPUs).
// ---------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------
// Reductions. A warp (32 threads) reduces with register shuffles, no shared
// memory; a block reduces its warps' partial results through 32 slots of
// shared memory. Both need every lane of a warp to take part (full mask), so
// block sizes are multiples of 32 and the callers keep the whole warp in the
// loop until the reduction.
// ---------------------------------------------------------------------------
struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return math_max(a, b); }
};

// Butterfly (xor) shuffles leave the result in EVERY lane, not only lane 0,
// so no broadcast step is needed afterwards.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) { return warp_reduce(v, SumOp()); }
template <typename T> __device__ __forceinline__ T warp_max(T v) { return warp_reduce(v, MaxOp()); }

// Sum over the whole block; every thread gets the total. Each warp reduces
// its own values, lane 0 parks the result in shared memory, then every warp
// reduces those (at most 32) partials itself -- one more shuffle round instead
// of a second __syncthreads + broadcast. Callable several times in a kernel:
// the leading __syncthreads keeps a new call from overwriting partials that a
// slow warp is still reading from the previous one.
template <typename T>
__device__ T block_sum(T v) {
    __shared__ T partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n_warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    return warp_sum(lane < n_warps ? partial[lane] : T(0));
}

#endif  // MINIGAN_COMMON_CUH
