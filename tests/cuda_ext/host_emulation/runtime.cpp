// The scheduler of the host emulation (runtime.h): blocks in order, each block's threads as ucontext
// fibers that run until they reach a barrier or finish, resumed round-robin.  A pass over the block in
// which no thread finished, reached a barrier or was released is a deadlock and fails the launch.
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdio>
#include <mutex>
#include <vector>

#include "runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SK_EMU_ASAN 1
#else
#define SK_EMU_ASAN 0
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace sk_emu {
namespace {

constexpr size_t kStackBytes = size_t(256) << 10;
constexpr int kWarp = 32;
constexpr unsigned kMaxBlockThreads = 1024;
constexpr unsigned kMaxGridYZ = 65535;

struct Fiber {
  ucontext_t context;
  void* stack = nullptr;
  bool done = false;
};

struct Barrier {
  int64_t arrived = 0;
  uint64_t generation = 0;
};

// The state of the running launch (one at a time: launch_mutex).
struct Scheduler {
  ucontext_t context;
  const void* stack_bottom = nullptr;  // the scheduler's stack, for the sanitizer's fiber switches
  size_t stack_size = 0;
  std::vector<Fiber> fibers;
  int threads = 0;
  int current = -1;
  uint64_t progress = 0;
  bool failed = false;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<float> exchange;
  const std::function<void()>* body = nullptr;
};

Scheduler s;
std::mutex launch_mutex;
thread_local cudaError_t last_error = cudaSuccess;

// Fail the running launch (the first message is printed; the launch stops and reports cudaErrorLaunchFailure).
void fail(const char* why) {
  if (!s.failed) {
    std::fprintf(stderr, "sidkernels host emulation: %s (block (%u, %u, %u) of %d threads, thread %d)\n", why,
                 blockIdx.x, blockIdx.y, blockIdx.z, s.threads, s.current);
  }
  s.failed = true;
  last_error = cudaErrorLaunchFailure;
}

// Switch from the running fiber back to the scheduler.
void yield() {
  Fiber& f = s.fibers[s.current];
#if SK_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, s.stack_bottom, s.stack_size);
  swapcontext(&f.context, &s.context);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  swapcontext(&f.context, &s.context);
#endif
}

void fiber_main() {
#if SK_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.stack_bottom, &s.stack_size);
#endif
  (*s.body)();
  s.fibers[s.current].done = true;
  ++s.progress;
#if SK_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, s.stack_bottom, s.stack_size);
#endif
}  // returns to the scheduler through uc_link

// Resume fiber t until it yields or finishes.
void resume(int t) {
  s.current = t;
  const unsigned bx = blockDim.x, by = blockDim.y;
  threadIdx = uint3{unsigned(t) % bx, (unsigned(t) / bx) % by, unsigned(t) / (bx * by)};
  Fiber& f = s.fibers[t];
#if SK_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, f.stack, kStackBytes);
  swapcontext(&s.context, &f.context);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  swapcontext(&s.context, &f.context);
#endif
}

// Wait until `expected` threads have arrived at barrier b (its current generation).
void wait(Barrier& b, int64_t expected) {
  ++s.progress;
  const uint64_t generation = b.generation;
  if (++b.arrived == expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  while (b.generation == generation) yield();
}

void run_block() {
  for (int t = 0; t < s.threads; ++t) {
    Fiber& f = s.fibers[t];
    if (f.stack == nullptr) {
      f.stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (f.stack == MAP_FAILED) {
        f.stack = nullptr;
        fail("could not allocate a fiber stack");
        return;
      }
    }
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &s.context;
    makecontext(&f.context, fiber_main, 0);
    f.done = false;
  }
  s.block_barrier = Barrier{};
  for (Barrier& b : s.warp_barriers) b = Barrier{};
  int remaining = s.threads;
  while (remaining > 0 && !s.failed) {
    const uint64_t before = s.progress;
    for (int t = 0; t < s.threads && !s.failed; ++t) {
      if (s.fibers[t].done) continue;
      resume(t);
      if (s.fibers[t].done) --remaining;
    }
    if (remaining > 0 && s.progress == before) {
      char why[200];
      std::snprintf(why, sizeof why, "deadlock: %d threads wait at a barrier (__syncthreads or a warp shuffle) "
                    "that the other %d never reach (they exited or wait elsewhere)", remaining, s.threads - remaining);
      s.current = -1;
      fail(why);
    }
  }
}

}  // namespace

void sync_block() { wait(s.block_barrier, s.threads); }

float shfl_xor(unsigned mask, float value, int lane_mask, int width) {
  if (mask != 0xffffffffu || width != kWarp || lane_mask < 0 || lane_mask >= kWarp) {
    fail("only full-warp __shfl_xor_sync (mask 0xffffffff, width 32, lane mask < 32) is emulated");
  }
  if (s.threads % kWarp != 0) fail("a warp shuffle in a block whose size is not a multiple of 32");
  if (s.failed) {
    yield();  // never resumed: the launch is over
    return value;
  }
  const int t = s.current, base = t - t % kWarp;
  Barrier& warp = s.warp_barriers[t / kWarp];
  s.exchange[t] = value;
  wait(warp, kWarp);  // every lane has written
  const float other = s.exchange[base + ((t % kWarp) ^ lane_mask)];
  wait(warp, kWarp);  // every lane has read
  return other;
}

void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& thread_body) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxBlockThreads || block.z > 64 || grid.x == 0 || grid.x > 0x7fffffffu ||
      grid.y == 0 || grid.y > kMaxGridYZ || grid.z == 0 || grid.z > kMaxGridYZ) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (shared_bytes != 0) {
    std::fprintf(stderr, "sidkernels host emulation: dynamic shared memory is not emulated\n");
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  s.threads = int(threads);
  if (s.fibers.size() < threads) s.fibers.resize(threads);
  s.warp_barriers.assign((threads + kWarp - 1) / kWarp, Barrier{});
  s.exchange.assign(threads, 0.0f);
  s.body = &thread_body;
  s.failed = false;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z && !s.failed; ++z) {
    for (unsigned y = 0; y < grid.y && !s.failed; ++y) {
      for (unsigned x = 0; x < grid.x && !s.failed; ++x) {
        blockIdx = uint3{x, y, z};
        run_block();
      }
    }
  }
  s.body = nullptr;
}

}  // namespace sk_emu

extern "C" cudaError_t cudaGetLastError(void) {
  const cudaError_t err = sk_emu::last_error;
  sk_emu::last_error = cudaSuccess;
  return err;
}

extern "C" const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (host emulation: see the message above)";
  }
  return "unknown error";
}
