// CPU emulation of the CUDA/HIP subset our kernels use (research/gpu-emulation.md §3.4): every GPU
// thread is a fiber on one OS thread; a scheduler switches fibers only at the points where real
// threads can interleave observably (block barriers, warp rendezvous, atomics), in a chosen order:
// in order, reverse, or seeded random. Warps of 32 or 64 lanes meet at each shuffle/vote; the last
// lane to arrive computes the whole warp's results. Shared memory is dynamic only, per block, and
// poisoned (0xFF bytes, a NaN in fp16/bf16/fp32) at block start. A launch in which no fiber can run
// while some have not finished is a deadlock: it is reported with each stuck thread's wait point.
//
// Kernel sources include it through kernels/gpu/device.h when compiled with -DDS_EMU; nothing here
// is used by production code. Errors (deadlock, divergent barrier, shuffle from an exited lane, too
// much shared memory) throw ds::emu::EmuError from launch().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// ---- CUDA keywords on the host compiler -------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Static shared memory cannot follow interleaved blocks on one OS thread: use ds::gpu::smem<T>().
#define __shared__ DS_EMU_static_shared_memory_is_not_supported_use_ds_gpu_smem

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace ds::emu {

struct EmuError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Schedule { kInOrder, kReverse, kRandom };

struct Options {
  Schedule schedule = Schedule::kInOrder;
  uint64_t seed = 1;
  int warp_size = 32;                   // 32 (NVIDIA) or 64 (CDNA)
  int max_resident_blocks = 4;          // blocks whose fibers interleave
  size_t max_smem_bytes = 227 * 1024;   // sm_90; gfx9 is 64 KiB
  size_t stack_bytes = 128 * 1024;
};
inline Options& options() {
  static Options o;
  return o;
}
inline const char* schedule_name(Schedule s) {
  return s == Schedule::kInOrder ? "in-order" : s == Schedule::kReverse ? "reverse" : "random";
}

// Sets the options for the launches of its scope.
class ScopedOptions {
 public:
  explicit ScopedOptions(const Options& o) : saved_(options()) { options() = o; }
  ~ScopedOptions() { options() = saved_; }

 private:
  Options saved_;
};

enum class ShflOp { kXor, kDown, kUp, kIdx, kBallot, kCollective };

// A warp-wide instruction whose every lane's result depends on every lane's operands (mma, MFMA):
// each lane passes a pointer to its operand/result record; the last lane to arrive calls the
// function once with all lanes' pointers (lanes = warp size; the whole warp must take part).
using CollectiveFn = void (*)(void* const* lane_records, int lanes);

namespace detail {

// ---- context switch: callee-saved registers on the fiber's own stack ------------------------
#if defined(__x86_64__)
extern "C" void ds_emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.weak ds_emu_switch
.type ds_emu_switch,@function
ds_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size ds_emu_switch,.-ds_emu_switch
)");
#endif

struct Block;

struct Fiber {
  enum State : uint8_t { kReady, kBarrier, kWarp, kDone };
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t ctx;
#endif
  char* stack = nullptr;  // lowest usable byte (a guard page lies below)
  dim3 tid;
  int linear = 0, lane = 0, warp = 0;
  Block* block = nullptr;
  State state = kReady;
  const char* wait_file = "";
  int wait_line = 0;
};

struct WarpState {
  int lanes = 0, live = 0, arrived = 0;
  ShflOp op[64];
  uint64_t value[64], result[64];
  int arg[64], width[64];
  void* record[64];
  CollectiveFn collective[64];
  bool present[64];
  Fiber* fiber[64];
};

struct Block {
  dim3 idx;
  int live = 0, arrived = 0;
  const char* bar_file = nullptr;
  int bar_line = 0;
  unsigned char* smem = nullptr;
  std::vector<WarpState> warps;
  std::vector<Fiber*> waiting;  // at the barrier
};

struct Launch {
  const char* name = "";
  dim3 grid, block;
  size_t smem_bytes = 0;
  const std::function<void()>* body = nullptr;
};

struct State {
  Launch launch;
  Options opt;
  std::deque<Fiber*> ready;
  std::mt19937_64 rng;
  Fiber* current = nullptr;
  void* main_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t main_ctx;
#endif
  std::string error;  // set by a fiber that hit a programming error
  std::vector<char*> stack_pool;
  size_t pooled_stack_bytes = 0;
  bool in_launch = false;
  // Stream capture (a graph): launches and the runtime's copies are recorded here instead of run.
  std::vector<std::function<void()>>* capture = nullptr;

  ~State() { release_stacks(); }
  void release_stacks() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (char* s : stack_pool) munmap(s - page, pooled_stack_bytes + page);
    stack_pool.clear();
  }
};

inline State& state() {
  static thread_local State s;
  return s;
}
inline Fiber* cur() {
  Fiber* f = state().current;
  if (f == nullptr) {
    std::fprintf(stderr, "ds::emu: a device function was called outside a kernel launch\n");
    std::abort();
  }
  return f;
}

inline char* take_stack(size_t bytes) {
  State& s = state();
  if (s.pooled_stack_bytes != bytes) {
    s.release_stacks();
    s.pooled_stack_bytes = bytes;
  }
  if (!s.stack_pool.empty()) {
    char* p = s.stack_pool.back();
    s.stack_pool.pop_back();
    return p;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* m = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) throw EmuError("ds::emu: cannot map a fiber stack");
  mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
  return static_cast<char*>(m) + page;
}

// Back to the scheduler; returns when the scheduler picks this fiber again.
inline void yield_to_scheduler() {
  State& s = state();
  Fiber* f = s.current;
#if defined(__x86_64__)
  ds_emu_switch(&f->sp, s.main_sp);
#else
  swapcontext(&f->ctx, &s.main_ctx);
#endif
}

[[noreturn]] inline void fiber_fail(const std::string& msg) {
  State& s = state();
  s.error = msg;
  for (;;) yield_to_scheduler();  // the scheduler abandons the launch and never resumes us
}

inline void make_ready(Fiber* f) {
  f->state = Fiber::kReady;
  state().ready.push_back(f);
}

inline void release_barrier(Block* b) {
  for (Fiber* f : b->waiting) make_ready(f);
  b->waiting.clear();
  b->arrived = 0;
  b->bar_file = nullptr;
}

inline std::string where(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }

// Completes a warp rendezvous once every live lane has arrived.
inline void complete_warp(WarpState& w) {
  const int ws = state().opt.warp_size;
  ShflOp op = ShflOp::kXor;
  bool first = true;
  for (int l = 0; l < w.lanes; ++l) {
    if (!w.present[l]) continue;
    if (first) op = w.op[l], first = false;
    else if (w.op[l] != op) fiber_fail("lanes of one warp reached different warp operations (divergent shuffle/vote)");
  }
  if (op == ShflOp::kCollective) {
    for (int l = 0; l < w.lanes; ++l)
      if (!w.present[l] || w.collective[l] != w.collective[0])
        fiber_fail("a warp-wide matrix instruction needs every lane of the warp, running the same instruction");
    if (w.lanes != state().opt.warp_size) fiber_fail("a warp-wide matrix instruction in a partial warp");
    w.collective[0](w.record, w.lanes);
  }
  uint64_t ballot = 0;
  for (int l = 0; l < w.lanes; ++l)
    if (w.present[l] && w.value[l] != 0) ballot |= uint64_t{1} << l;
  for (int l = 0; l < w.lanes; ++l) {
    if (!w.present[l]) continue;
    if (op == ShflOp::kBallot) {
      w.result[l] = ballot;
      continue;
    }
    if (op == ShflOp::kCollective) continue;
    const int width = w.width[l] == 0 ? ws : w.width[l];
    if (width <= 0 || width > ws || (width & (width - 1)) != 0)
      fiber_fail("shuffle width " + std::to_string(width) + " is not a power of two <= the warp size");
    const int seg = l & ~(width - 1), end = seg + width, b = w.arg[l];
    int j = l;
    bool ok = true;
    switch (op) {
      case ShflOp::kXor: j = l ^ (b & (ws - 1)); ok = j < end; break;
      case ShflOp::kDown: j = l + (b & (ws - 1)); ok = j < end; break;
      case ShflOp::kUp: j = l - (b & (ws - 1)); ok = j >= seg; break;
      case ShflOp::kIdx: j = seg + (b & (width - 1)); break;
      case ShflOp::kBallot:
      case ShflOp::kCollective: break;
    }
    if (!ok) j = l;
    if (j >= w.lanes || !w.present[j])
      fiber_fail("lane " + std::to_string(l) + " shuffles from lane " + std::to_string(j) + ", which has exited or does not exist");
    w.result[l] = w.value[j];
  }
  for (int l = 0; l < w.lanes; ++l)
    if (w.present[l]) {
      w.present[l] = false;
      make_ready(w.fiber[l]);
    }
  w.arrived = 0;
}

inline void fiber_exit(Fiber* f) {
  f->state = Fiber::kDone;
  Block* b = f->block;
  b->live--;
  if (b->arrived > 0 && b->arrived == b->live) release_barrier(b);
  WarpState& w = b->warps[static_cast<size_t>(f->warp)];
  w.live--;
  if (w.arrived > 0 && w.arrived == w.live) complete_warp(w);
}

inline void fiber_main() {
  State& s = state();
  (*s.launch.body)();
  fiber_exit(s.current);
  for (;;) yield_to_scheduler();
}

inline void start_fiber(Fiber* f) {
  State& s = state();
  f->stack = take_stack(s.opt.stack_bytes);
#if defined(__x86_64__)
  // Top of stack: a null return address for fiber_main, the entry address for ds_emu_switch's
  // ret, six callee-saved registers and the saved mxcsr/x87 control words.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack) + s.opt.stack_bytes) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);
  for (int i = 0; i < 6; ++i) *--sp = 0;
  uint32_t csr[2];
  __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  --sp;
  std::memcpy(sp, csr, 8);
  f->sp = sp;
#else
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack;
  f->ctx.uc_stack.ss_size = s.opt.stack_bytes;
  f->ctx.uc_link = nullptr;
  makecontext(&f->ctx, &fiber_main, 0);
#endif
}

inline Fiber* pick() {
  State& s = state();
  if (s.ready.empty()) return nullptr;
  Fiber* f = nullptr;
  switch (s.opt.schedule) {
    case Schedule::kInOrder: f = s.ready.front(); s.ready.pop_front(); break;
    case Schedule::kReverse: f = s.ready.back(); s.ready.pop_back(); break;
    case Schedule::kRandom: {
      const size_t i = static_cast<size_t>(s.rng() % s.ready.size());
      std::swap(s.ready[i], s.ready.back());
      f = s.ready.back();
      s.ready.pop_back();
      break;
    }
  }
  return f;
}

inline std::string deadlock_report(const std::vector<Fiber>& fibers) {
  std::string r = "deadlock: no thread can run";
  int shown = 0;
  for (const Fiber& f : fibers) {
    if (f.state == Fiber::kDone || shown >= 8) continue;
    r += "; block (" + std::to_string(f.block->idx.x) + "," + std::to_string(f.block->idx.y) + ") thread " +
         std::to_string(f.linear) + (f.state == Fiber::kBarrier ? " waits at __syncthreads " : " waits at a warp op ") +
         where(f.wait_file, f.wait_line);
    ++shown;
  }
  return r;
}

// Runs blocks [first, first + n) of the launch's block order to completion.
inline void run_blocks(const std::vector<dim3>& order, size_t first, size_t n) {
  State& s = state();
  const Launch& L = s.launch;
  const int nthreads = static_cast<int>(L.block.x * L.block.y * L.block.z);
  const int ws = s.opt.warp_size;
  std::vector<Block> blocks(n);
  std::vector<Fiber> fibers(n * static_cast<size_t>(nthreads));
  std::vector<std::vector<unsigned char>> smem(n);
  s.ready.clear();
  for (size_t bi = 0; bi < n; ++bi) {
    Block& b = blocks[bi];
    b.idx = order[first + bi];
    b.live = nthreads;
    smem[bi].assign(L.smem_bytes + 16, 0xFF);
    b.smem = smem[bi].data();
    b.warps.resize(static_cast<size_t>((nthreads + ws - 1) / ws));
    for (size_t w = 0; w < b.warps.size(); ++w) {
      WarpState& st = b.warps[w];
      st.lanes = std::min(ws, nthreads - static_cast<int>(w) * ws);
      st.live = st.lanes;
      std::memset(st.present, 0, sizeof st.present);
    }
  }
  for (size_t bi = 0; bi < n; ++bi)
    for (int t = 0; t < nthreads; ++t) {
      Fiber& f = fibers[bi * static_cast<size_t>(nthreads) + static_cast<size_t>(t)];
      f.block = &blocks[bi];
      f.linear = t;
      f.tid = dim3(static_cast<unsigned>(t) % L.block.x, (static_cast<unsigned>(t) / L.block.x) % L.block.y,
                   static_cast<unsigned>(t) / (L.block.x * L.block.y));
      f.lane = t % ws;
      f.warp = t / ws;
      start_fiber(&f);
      s.ready.push_back(&f);
    }
  size_t done = 0;
  std::string failure;
  while (done < fibers.size()) {
    Fiber* f = pick();
    if (f == nullptr) {
      failure = deadlock_report(fibers);
      break;
    }
    s.current = f;
#if defined(__x86_64__)
    ds_emu_switch(&s.main_sp, f->sp);
#else
    swapcontext(&s.main_ctx, &f->ctx);
#endif
    s.current = nullptr;
    if (!s.error.empty()) {
      failure = s.error;
      s.error.clear();
      break;
    }
    if (f->state == Fiber::kDone) ++done;
  }
  if (failure.empty()) {
    for (Fiber& f : fibers) s.stack_pool.push_back(f.stack);
    return;
  }
  // Abandoned fibers keep their stacks (whatever lives on them is leaked, not destroyed).
  for (Fiber& f : fibers)
    if (f.state == Fiber::kDone) s.stack_pool.push_back(f.stack);
  s.ready.clear();
  throw EmuError(std::string("ds::emu: kernel ") + L.name + " (" + schedule_name(s.opt.schedule) + " schedule): " + failure);
}

}  // namespace detail

// ---- what device.h and kernels call --------------------------------------------------------------
inline int warp_size() { return detail::state().opt.warp_size; }
inline int lane_id() { return detail::cur()->lane; }
inline unsigned char* smem_base() { return detail::cur()->block->smem; }
inline dim3& thread_idx() { return detail::cur()->tid; }
inline dim3& block_idx() { return detail::cur()->block->idx; }
inline dim3& block_dim() { return detail::state().launch.block; }
inline dim3& grid_dim() { return detail::state().launch.grid; }

inline void syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace detail;
  Fiber* f = cur();
  Block* b = f->block;
  if (b->arrived == 0) {
    b->bar_file = file;
    b->bar_line = line;
  } else if (b->bar_line != line || std::strcmp(b->bar_file, file) != 0) {
    fiber_fail("threads of one block wait at different __syncthreads: " + where(b->bar_file, b->bar_line) + " and " +
               where(file, line));
  }
  f->state = Fiber::kBarrier;
  f->wait_file = file;
  f->wait_line = line;
  b->waiting.push_back(f);
  if (++b->arrived == b->live) release_barrier(b);
  yield_to_scheduler();
}

// One lane's part of a warp rendezvous; returns its result once every live lane has arrived.
inline uint64_t warp_exchange(ShflOp op, uint64_t value, int arg, int width, const char* file, int line) {
  using namespace detail;
  Fiber* f = cur();
  WarpState& w = f->block->warps[static_cast<size_t>(f->warp)];
  const int l = f->lane;
  w.op[l] = op;
  w.value[l] = value;
  w.arg[l] = arg;
  w.width[l] = width;
  w.present[l] = true;
  w.fiber[l] = f;
  f->state = Fiber::kWarp;
  f->wait_file = file;
  f->wait_line = line;
  if (++w.arrived == w.live) complete_warp(w);
  yield_to_scheduler();
  return w.result[l];
}

template <typename T>
inline T shfl(ShflOp op, T v, int arg, int width, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const uint64_t r = warp_exchange(op, bits, arg, width, file, line);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}
inline uint64_t ballot(bool p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return warp_exchange(ShflOp::kBallot, p ? 1 : 0, 0, 0, file, line);
}
inline void warp_collective(CollectiveFn fn, void* record, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
  using namespace detail;
  Fiber* f = cur();
  WarpState& w = f->block->warps[static_cast<size_t>(f->warp)];
  w.record[f->lane] = record;
  w.collective[f->lane] = fn;
  warp_exchange(ShflOp::kCollective, 0, 0, 0, file, line);
}

// Atomics are scheduling points: another thread may run between any two of them.
inline void atomic_point() {
  detail::make_ready(detail::cur());
  detail::yield_to_scheduler();
}
inline float flush_subnormal(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }
inline float atomic_add(float* p, float v) {
  atomic_point();
  const float old = *p;
  *p = flush_subnormal(flush_subnormal(old) + flush_subnormal(v));  // atom.add.f32 flushes (§1.11)
  return old;
}
template <typename I>
inline I atomic_add(I* p, I v) {
  atomic_point();
  const I old = *p;
  *p = static_cast<I>(old + v);
  return old;
}

// Stream capture, as a CUDA/HIP graph: between begin_capture and end_capture, launches (and the
// copies the runtime records with record_or_run) are appended to `into` with their arguments as
// evaluated at the launch, and run only when the list is replayed.
inline void begin_capture(std::vector<std::function<void()>>* into) { detail::state().capture = into; }
inline void end_capture() { detail::state().capture = nullptr; }
inline bool capturing() { return detail::state().capture != nullptr; }
inline void record_or_run(std::function<void()> op) {
  if (auto* c = detail::state().capture) {
    c->push_back(std::move(op));
  } else {
    op();
  }
}

// Runs `body` (a call of the kernel with its arguments) for every thread of grid x block; under
// capture, records the launch instead.
template <typename F>
void launch(const char* name, dim3 grid, dim3 block, size_t smem_bytes, F body) {
  using namespace detail;
  State& s = state();
  if (s.in_launch) throw EmuError(std::string("ds::emu: kernel ") + name + " launched from inside a kernel");
  if (s.capture != nullptr) {
    std::function<void()> fn = std::move(body);
    s.capture->push_back([name, grid, block, smem_bytes, fn] { launch(name, grid, block, smem_bytes, fn); });
    return;
  }
  const Options& o = options();
  const unsigned long threads = static_cast<unsigned long>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024)
    throw EmuError(std::string("ds::emu: kernel ") + name + " launched with " + std::to_string(threads) + " threads per block (1..1024)");
  if (smem_bytes > o.max_smem_bytes)
    throw EmuError(std::string("ds::emu: kernel ") + name + " asks for " + std::to_string(smem_bytes) +
                   " bytes of shared memory; the device allows " + std::to_string(o.max_smem_bytes));
  if (o.warp_size != 32 && o.warp_size != 64) throw EmuError("ds::emu: warp size must be 32 or 64");
  std::function<void()> fn = std::move(body);
  s.launch = {name, grid, block, smem_bytes, &fn};
  s.opt = o;
  s.rng.seed(o.seed);
  std::vector<dim3> order;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) order.emplace_back(x, y, z);
  if (o.schedule == Schedule::kReverse) std::reverse(order.begin(), order.end());
  if (o.schedule == Schedule::kRandom) std::shuffle(order.begin(), order.end(), s.rng);
  const size_t resident = static_cast<size_t>(std::max(1, o.max_resident_blocks));
  s.in_launch = true;
  try {
    for (size_t b = 0; b < order.size(); b += resident) run_blocks(order, b, std::min(resident, order.size() - b));
  } catch (...) {
    s.in_launch = false;
    throw;
  }
  s.in_launch = false;
}

// DS_LAUNCH's form: the arguments are evaluated once, at the launch, as on a GPU.
template <typename K, typename... A>
void launch_kernel(const char* name, dim3 grid, dim3 block, size_t smem_bytes, K kernel, A... args) {
  launch(name, grid, block, smem_bytes, [kernel, args...] { kernel(args...); });
}

}  // namespace ds::emu

#define threadIdx (::ds::emu::thread_idx())
#define blockIdx (::ds::emu::block_idx())
#define blockDim (::ds::emu::block_dim())
#define gridDim (::ds::emu::grid_dim())
#define __syncthreads() ::ds::emu::syncthreads(__builtin_FILE(), __builtin_LINE())
