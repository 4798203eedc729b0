// adam.cu -- one Adam step, in place, for one tensor or for a whole list of
// tensors in a single launch.
//
//     g <- g + weight_decay * p                       (L2 decay, as torch.optim.Adam)
//     m <- beta1 * m + (1 - beta1) * g
//     v <- beta2 * v + (1 - beta2) * g^2
//     p <- p - lr * (m / bias1) / (sqrt(v / bias2) + eps)
// with bias1 = 1 - beta1^step, bias2 = 1 - beta2^step computed once on the host.
//
// Layout: p, g, m, v of one tensor are flat (size,), C-contiguous, one dtype.
//
// adam_kernel: one tensor, one thread per element, blocks of 256,
// grid-stride. Pure bandwidth: 4 loads + 3 stores per element.
//
// adam_multi_kernel: a GAN has ~50 parameter tensors, many of them tiny
// (biases, batch-norm gammas, attention's gamma). Launching adam_kernel once
// per tensor costs ~5 us of launch overhead each, far more than the update of
// a 64-element bias. The fused kernel updates all of them in one launch.
//
//   How the tensors are passed: by POINTER TABLE, not by flat packing. The
//   parameters, their gradients and their moments are separate arrays owned
//   by separate modules (and a fresh gradient array comes with every
//   backward pass), so packing them into one flat buffer would mean copying
//   everything in and out on every step -- 3x the traffic of the update
//   itself. Instead cuda.py uploads one small int64 table (6, P):
//       table[0][t]    address of param t        table[3][t]  address of v t
//       table[1][t]    address of grad t         table[4][t]  size of tensor t
//       table[2][t]    address of m t            table[5][t]  first chunk of tensor t
//   (a few hundred bytes per step, and reused while the addresses repeat).
//
//   How blocks find their work: every tensor is cut into chunks of `chunk`
//   elements, chunks are numbered tensor after tensor, and block b takes
//   chunk b. table[5] holds the running sum of chunk counts, so a block finds
//   its tensor by a binary search over P entries (a handful of cached loads
//   per block, none per element). Every block gets the same amount of work
//   whether its tensor is big or tiny, no block straddles two tensors, and the
//   grid is exactly the total chunk count. Inside a chunk the 256 threads
//   stride together, so accesses stay coalesced.
//
// CPU twin: minigan/backend/cpu.py::adam_step / adam_step_multi.
// Test: tests/kernels/test_parity.py. Benchmark: benchmarks/bench_kernels.py.
// Caller: minigan/optim.py (Adam).
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
__global__ void adam_multi_kernel(const index_t* __restrict__ table,  // (6, P), see above
                                  int P, int chunk, T lr, T beta1, T beta2, T eps,
                                  T weight_decay, T bias1, T bias2) {
    const index_t* first_chunk = table + 5 * P;  // (P,), ascending
    // Largest t with first_chunk[t] <= blockIdx.x: the tensor owning this chunk.
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
