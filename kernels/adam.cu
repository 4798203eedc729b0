// adam.cu -- one Adam step in place (L2 weight decay, as torch.optim.Adam),
// for one tensor or for every parameter tensor in a single launch.
//
//     g <- g + weight_decay * p
//     m <- beta1 * m + (1 - beta1) * g,   v <- beta2 * v + (1 - beta2) * g^2
//     p <- p - lr * (m / bias1) / (sqrt(v / bias2) + eps),   bias_k = 1 - beta_k^step (host)
//
// Layout: p, g, m, v of a tensor flat (size,), C-contiguous; adam_multi_kernel
// takes an int64 pointer table (6, P), rows below (kernels/README.md, "adam.cu").
// Launch: adam_kernel one thread per element, blocks of 256, grid-stride;
// adam_multi_kernel one block per chunk of `chunk` elements, chunks numbered
// tensor after tensor.
// CPU twin: minigan/backend/cpu.py::adam_step / adam_step_multi.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void adam_update(T* __restrict__ p, const T* __restrict__ g,
                                            T* __restrict__ m, T* __restrict__ v, index_t i,
                                            T lr, T beta1, T beta2, T eps, T weight_decay,
                                            T bias1, T bias2) {
    const T gi = g[i] + weight_decay * p[i];
    const T mi = beta1 * m[i] + (T(1) - beta1) * gi;
    const T vi = beta2 * v[i] + (T(1) - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * (mi / bias1) / (math_sqrt(vi / bias2) + eps);
}

template <typename T>
__global__ void adam_kernel(T* __restrict__ p,        // (size,)
                            const T* __restrict__ g,  // (size,)
                            T* __restrict__ m,        // (size,)
                            T* __restrict__ v,        // (size,)
                            index_t size, T lr, T beta1, T beta2, T eps, T weight_decay,
                            T bias1, T bias2) {
    GRID_STRIDE_LOOP(i, size) adam_update(p, g, m, v, i, lr, beta1, beta2, eps, weight_decay, bias1, bias2);
}

template <typename T>
__global__ void adam_multi_kernel(const index_t* __restrict__ table,  // (6, P)
                                  int P, int chunk, T lr, T beta1, T beta2, T eps,
                                  T weight_decay, T bias1, T bias2) {
    // table rows: 0 param, 1 grad, 2 m, 3 v addresses; 4 sizes; 5 first chunk (ascending)
    const index_t* first_chunk = table + 5 * P;
    // Binary search: the largest t with first_chunk[t] <= blockIdx.x owns this chunk.
    int lo = 0, hi = P - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (__ldg(first_chunk + mid) <= (index_t)blockIdx.x) lo = mid; else hi = mid - 1;
    }
    const int t = lo;
    T* p = reinterpret_cast<T*>(__ldg(table + 0 * P + t));
    const T* g = reinterpret_cast<const T*>(__ldg(table + 1 * P + t));
    T* m = reinterpret_cast<T*>(__ldg(table + 2 * P + t));
    T* v = reinterpret_cast<T*>(__ldg(table + 3 * P + t));
    const index_t size = __ldg(table + 4 * P + t);

    const index_t begin = ((index_t)blockIdx.x - first_chunk[t]) * chunk;
    const index_t end = begin + chunk < size ? begin + chunk : size;
    for (index_t i = begin + threadIdx.x; i < end; i += blockDim.x)
        adam_update(p, g, m, v, i, lr, beta1, beta2, eps, weight_decay, bias1, bias2);
}
