// cuda_emu.h -- the part of CUDA that kernels/*.cu use, for the host C++ compiler.
//
// minigan's cuda-emu device (minigan/backend/emu_kernels.py) compiles the
// unmodified kernel files with g++ after this header, so every kernel runs on
// the CPU exactly as written. What it supplies:
//   * the qualifiers (__global__, __device__, __host__, __forceinline__);
//   * threadIdx / blockIdx / blockDim / gridDim;
//   * the threads of a block as real concurrent contexts: one fiber (its own
//     stack and registers) per CUDA thread, all on one OS thread, switched
//     only where CUDA threads wait for each other. A fiber runs until it reaches
//     __syncthreads() or a warp shuffle and then waits there, so
//     __syncthreads() is a real barrier (no thread passes it before every
//     thread has reached it) and a missing one gives a wrong answer every time
//     instead of passing by the luck of serial order;
//   * warp shuffles, votes and __syncwarp in lockstep over the 32 lanes of a
//     warp: every lane named in the mask deposits its value, and only when
//     all of them have arrived are the results handed out;
//   * __shared__ memory, one copy per block (blocks run one after another, so a
//     function-local static is exactly one block's shared memory);
//   * __ldg, atomics, min/max and the CUDA math functions; printf works.
// Misuse is an error, not a hang: a barrier some threads never reach, a
// shuffle whose mask names an exited lane or that reads a lane outside the
// mask. Not emulated: dynamic (extern) shared memory, clusters, cooperative
// groups, timing and the memory model of a real GPU (see kernels/README.md).
#ifndef MINIGAN_CUDA_EMU_H
#define MINIGAN_CUDA_EMU_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __constant__ static
#define __launch_bounds__(...)

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace cuda_emu {

enum Wait { RUNNING, AT_BARRIER, AT_WARP, DONE };
enum WarpOp { SYNC, SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, VOTE_BALLOT, VOTE_ANY, VOTE_ALL };

// A fiber's saved context. On x86-64 a six-register switch (the callee-saved
// registers and the stack pointer: a switch is an ordinary function call
// for the compiler); elsewhere ucontext, whose swapcontext also saves the
// signal mask with a system call, several times slower.
#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
struct Context { void* sp; };

__attribute__((naked, noinline)) static void switch_stack(void** save_sp, void* load_sp) {
    asm volatile(
        "pushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n\t"
        "movq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n\t"
        "popq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret");
}
inline void swap(Context& from, Context& to) { switch_stack(&from.sp, to.sp); }
inline void make(Context& c, char* stack, size_t size, void (*entry)()) {
    void** sp = (void**)(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
    *--sp = nullptr;         // so that entry starts with the stack aligned as after a call
    *--sp = (void*)entry;    // where the first switch's `ret` goes
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
    c.sp = sp;
}
#else
struct Context { ucontext_t uc; };
inline void swap(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make(Context& c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

const int WARP = 32;
const size_t STACK_BYTES = 64 * 1024;  // per CUDA thread; printf needs a few KB

struct Thread {
    Context context;
    uint3 idx;
    int linear;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
    Wait wait;
    // a pending warp operation
    WarpOp op;
    unsigned int mask;
    int arg, width;
    uint64_t value, result;
};

struct Launch {
    void (*body)(void*);  // runs the kernel once, for the current thread
    void* closure;
    dim3 grid, block;
    uint3 block_idx;
    Thread* threads;
    int n_threads;
    Thread* current;
    Context scheduler;
    char* stacks;
    char error[512];
    bool failed;
};

static Launch* launch_state = nullptr;  // one launch at a time (the Python side holds a lock)

// Fiber stacks, kept from launch to launch (their pages stay mapped).
inline char* stacks_for(int n_threads) {
    static char* pool = nullptr;
    static int pool_threads = 0;
    if (n_threads > pool_threads) {
        free(pool);
        pool = (char*)malloc(STACK_BYTES * (size_t)n_threads);
        pool_threads = pool ? n_threads : 0;
    }
    return pool;
}

inline Thread* current_thread() { return launch_state->current; }

// Stop the launch with a message; the Python side raises it.
inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void fail(const char* fmt, ...) {
    Launch* L = launch_state;
    if (!L->failed) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(L->error, sizeof L->error, fmt, args);
        va_end(args);
        L->failed = true;
    }
    if (L->current) swap(L->current->context, L->scheduler);  // never resumed
}

// The calling thread waits here until the scheduler releases it.
inline void suspend(Wait why) {
    Thread* t = current_thread();
    t->wait = why;
    swap(t->context, launch_state->scheduler);
}

inline void fiber_entry() {
    for (;;) {  // a fiber is reused for the same thread index of every block
        Launch* L = launch_state;
        L->body(L->closure);
        L->current->wait = DONE;
        swap(L->current->context, L->scheduler);
    }
}

inline const char* describe(const Thread& t) {
    static char text[96];
    snprintf(text, sizeof text, "thread (%u,%u,%u) of block (%u,%u,%u)", t.idx.x, t.idx.y, t.idx.z,
             launch_state->block_idx.x, launch_state->block_idx.y, launch_state->block_idx.z);
    return text;
}

// Source lane of a shuffle, or -1 for "keep your own value" (CUDA's rules per width segment).
inline int shuffle_source(const Thread& t, int lane) {
    const int w = t.width, base = lane & ~(w - 1), in = lane - base;
    switch (t.op) {
        case SHFL_IDX: return base + (t.arg & (w - 1));
        case SHFL_UP: return in - t.arg >= 0 ? lane - t.arg : -1;
        case SHFL_DOWN: return in + t.arg < w ? lane + t.arg : -1;
        case SHFL_XOR: { const int s = lane ^ t.arg; return s >= base && s < base + w ? s : -1; }
        default: return -1;
    }
}

// Release one warp operation if every lane of its mask has arrived at it; returns true if it did.
inline bool release_warp(Thread* warp, int lanes, Thread& first) {
    const unsigned int mask = first.mask;
    for (int l = 0; l < lanes; ++l) {
        if (!(mask >> l & 1u)) continue;
        Thread& t = warp[l];
        if (t.wait == DONE)
            fail("%s: a warp operation's mask 0x%08x names lane %d, which has exited", describe(first), mask, l);
        if (t.wait != AT_WARP) return false;  // still running, or at a __syncthreads: checked by the caller
        if (t.mask != mask || t.op != first.op)
            fail("%s: the lanes of mask 0x%08x are at different warp operations (divergent shuffles)",
                 describe(first), mask);
    }
    for (int l = lanes; l < WARP; ++l)
        if (mask >> l & 1u) fail("%s: mask 0x%08x names lane %d, past the end of the block", describe(first), mask, l);
    unsigned int votes = 0;
    for (int l = 0; l < lanes; ++l)
        if (mask >> l & 1u && warp[l].value) votes |= 1u << l;
    for (int l = 0; l < lanes; ++l) {
        if (!(mask >> l & 1u)) continue;
        Thread& t = warp[l];
        switch (t.op) {
            case SYNC: break;
            case VOTE_BALLOT: t.result = votes; break;
            case VOTE_ANY: t.result = votes != 0; break;
            case VOTE_ALL: t.result = votes == mask; break;
            default: {
                const int s = shuffle_source(t, l);
                if (s >= 0 && !(mask >> s & 1u))
                    fail("%s: the shuffle reads lane %d, which is not in its mask 0x%08x", describe(t), s, mask);
                t.result = s < 0 || s >= lanes ? t.value : warp[s].value;
            }
        }
        t.wait = RUNNING;
    }
    return true;
}

// Run every thread of one block to completion.
inline void run_block() {
    Launch* L = launch_state;
    for (int i = 0; i < L->n_threads; ++i) L->threads[i].wait = RUNNING;
    for (;;) {
        for (int i = 0; i < L->n_threads && !L->failed; ++i) {
            Thread& t = L->threads[i];
            if (t.wait != RUNNING) continue;
            L->current = &t;
            swap(L->scheduler, t.context);
        }
        L->current = nullptr;
        if (L->failed) return;
        // every thread is now DONE, at a barrier, or at a warp operation
        bool released = false;
        for (int w = 0; w * WARP < L->n_threads; ++w) {
            Thread* warp = L->threads + w * WARP;
            const int lanes = L->n_threads - w * WARP < WARP ? L->n_threads - w * WARP : WARP;
            for (int l = 0; l < lanes; ++l)
                if (warp[l].wait == AT_WARP) released |= release_warp(warp, lanes, warp[l]);
            if (L->failed) return;
        }
        if (released) continue;
        int done = 0, barrier = 0;
        for (int i = 0; i < L->n_threads; ++i) {
            done += L->threads[i].wait == DONE;
            barrier += L->threads[i].wait == AT_BARRIER;
        }
        if (done == L->n_threads) return;
        if (barrier + done == L->n_threads && done == 0) {
            for (int i = 0; i < L->n_threads; ++i) L->threads[i].wait = RUNNING;
            continue;
        }
        launch_state->current = nullptr;
        for (int i = 0; i < L->n_threads; ++i) {
            const Thread& t = L->threads[i];
            if (t.wait == AT_WARP)
                return fail("%s waits at a warp operation (mask 0x%08x) that lanes of its warp never reach "
                            "(they are at __syncthreads() or elsewhere): deadlock", describe(t), t.mask);
        }
        for (int i = 0; i < L->n_threads; ++i) {
            const Thread& t = L->threads[i];
            if (t.wait == AT_BARRIER)
                return fail("%s waits at __syncthreads() but %d thread(s) of its block have exited "
                            "(a barrier inside divergent code)", describe(t), done);
        }
        return fail("the block deadlocked");
    }
}

inline int run_grid(void (*body)(void*), void* closure, const unsigned* grid, const unsigned* block,
                    char* error, size_t error_size) {
    Launch L;
    memset(&L, 0, sizeof L);
    L.body = body;
    L.closure = closure;
    L.grid = dim3(grid[0], grid[1], grid[2]);
    L.block = dim3(block[0], block[1], block[2]);
    L.n_threads = (int)(block[0] * block[1] * block[2]);
    launch_state = &L;
    L.threads = (Thread*)calloc(L.n_threads, sizeof(Thread));
    L.stacks = stacks_for(L.n_threads);
    if (!L.threads || !L.stacks) {
        snprintf(error, error_size, "out of memory for %d emulated threads", L.n_threads);
        free(L.threads);
        launch_state = nullptr;
        return 1;
    }
    for (int i = 0; i < L.n_threads; ++i) {
        Thread& t = L.threads[i];
        t.linear = i;
        t.idx.x = i % L.block.x;
        t.idx.y = (i / L.block.x) % L.block.y;
        t.idx.z = i / (L.block.x * L.block.y);
        make(t.context, L.stacks + STACK_BYTES * (size_t)i, STACK_BYTES, fiber_entry);
    }
    for (unsigned z = 0; z < L.grid.z && !L.failed; ++z)
        for (unsigned y = 0; y < L.grid.y && !L.failed; ++y)
            for (unsigned x = 0; x < L.grid.x && !L.failed; ++x) {
                L.block_idx.x = x;
                L.block_idx.y = y;
                L.block_idx.z = z;
                run_block();
            }
    fflush(stdout);  // a kernel's printf output appears when its launch returns, as after a CUDA sync
    const int status = L.failed ? 1 : 0;
    if (L.failed) snprintf(error, error_size, "%s", L.error);
    free(L.threads);
    launch_state = nullptr;
    return status;
}

// A kernel call with its arguments unpacked from CUDA's void** convention
// (args[i] points at the value of parameter i, as for cuLaunchKernel).
template <typename... P>
struct Call {
    void (*kernel)(P...);
    void** args;
    template <size_t... I>
    void run(std::index_sequence<I...>) {
        kernel(*static_cast<typename std::remove_cv<P>::type*>(args[I])...);
    }
    static void body(void* self) { static_cast<Call*>(self)->run(std::index_sequence_for<P...>{}); }
};

template <typename... P>
int launch(void (*kernel)(P...), const unsigned* grid, const unsigned* block, void** args, char* error,
           size_t error_size) {
    Call<P...> call{kernel, args};
    return run_grid(&Call<P...>::body, &call, grid, block, error, error_size);
}

template <typename T>
inline T warp_op(WarpOp op, unsigned int mask, T value, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp operations move <= 8 bytes");
    Thread* t = current_thread();
    if (!(mask >> (t->linear % WARP) & 1u))
        fail("%s calls a warp operation whose mask 0x%08x does not include its own lane %d", describe(*t), mask,
             t->linear % WARP);
    if (width < 1 || width > WARP || (width & (width - 1)))
        fail("%s: shuffle width %d is not a power of 2 in [1, 32]", describe(*t), width);
    t->op = op;
    t->mask = mask;
    t->arg = arg;
    t->width = width;
    t->value = 0;
    memcpy(&t->value, &value, sizeof(T));
    suspend(AT_WARP);
    T out;
    memcpy(&out, &t->result, sizeof(T));
    return out;
}

}  // namespace cuda_emu

#define threadIdx (cuda_emu::current_thread()->idx)
#define blockIdx (cuda_emu::launch_state->block_idx)
#define blockDim (cuda_emu::launch_state->block)
#define gridDim (cuda_emu::launch_state->grid)
#define warpSize 32

inline void __syncthreads() { cuda_emu::suspend(cuda_emu::AT_BARRIER); }
inline void __syncwarp(unsigned int mask = 0xffffffffu) { cuda_emu::warp_op<int>(cuda_emu::SYNC, mask, 0, 0, 32); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T> inline T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    return cuda_emu::warp_op(cuda_emu::SHFL_IDX, mask, v, src, width);
}
template <typename T> inline T __shfl_up_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    return cuda_emu::warp_op(cuda_emu::SHFL_UP, mask, v, (int)delta, width);
}
template <typename T> inline T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    return cuda_emu::warp_op(cuda_emu::SHFL_DOWN, mask, v, (int)delta, width);
}
template <typename T> inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    return cuda_emu::warp_op(cuda_emu::SHFL_XOR, mask, v, lane_mask, width);
}
inline unsigned int __ballot_sync(unsigned int mask, int p) {
    return (unsigned int)cuda_emu::warp_op<int>(cuda_emu::VOTE_BALLOT, mask, p != 0, 0, 32);
}
inline int __any_sync(unsigned int mask, int p) { return cuda_emu::warp_op<int>(cuda_emu::VOTE_ANY, mask, p != 0, 0, 32); }
inline int __all_sync(unsigned int mask, int p) { return cuda_emu::warp_op<int>(cuda_emu::VOTE_ALL, mask, p != 0, 0, 32); }

// One OS thread runs every fiber and a fiber never yields inside these, so
// plain read-modify-writes are atomic here.
template <typename T> inline T atomicAdd(T* a, T v) { const T old = *a; *a = old + v; return old; }
template <typename T> inline T atomicSub(T* a, T v) { const T old = *a; *a = old - v; return old; }
template <typename T> inline T atomicMax(T* a, T v) { const T old = *a; if (v > old) *a = v; return old; }
template <typename T> inline T atomicMin(T* a, T v) { const T old = *a; if (v < old) *a = v; return old; }
template <typename T> inline T atomicExch(T* a, T v) { const T old = *a; *a = v; return old; }
template <typename T> inline T atomicCAS(T* a, T compare, T v) { const T old = *a; if (old == compare) *a = v; return old; }

template <typename T> inline T __ldg(const T* p) { return *p; }

template <typename A, typename B> inline typename std::common_type<A, B>::type min(A a, B b) { return b < a ? b : a; }
template <typename A, typename B> inline typename std::common_type<A, B>::type max(A a, B b) { return a < b ? b : a; }

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

#endif  // MINIGAN_CUDA_EMU_H
