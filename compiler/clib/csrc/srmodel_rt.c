/* srmodel_rt.c: the small runtime behind srmodel.h.
 *
 * It provides exactly what TVM-generated CPU kernels call back into (a thread pool behind
 * TVMBackendParallelLaunch/Barrier, workspace allocation, error reporting through
 * TVMFFIErrorSetRaisedFromCStr[Parts]) and interprets the generated plan (srm_model_plan):
 * tensors placed in one arena, constants in a read-only blob, kernels called in order.
 *
 * No libc headers: the libc functions used are declared below, with pthread objects stored in
 * 64 bytes (glibc x86_64/aarch64 and bionic aarch64 need at most 48), so the same file builds for
 * the host, Debian aarch64 and Android without a sysroot.
 */
#include <stdarg.h>

#include "srmodel.h"
#include "srmodel_cpu.h"
#include "srmodel_rt.h"

/* ---- the libc subset we use ------------------------------------------------------------- */
typedef struct { _Alignas(16) unsigned char opaque[64]; } srm_mutex;
typedef struct { _Alignas(16) unsigned char opaque[64]; } srm_cond;
typedef unsigned long srm_thread;
extern void* malloc(size_t);
extern void free(void*);
extern int posix_memalign(void**, size_t, size_t);
extern void* memcpy(void*, const void*, size_t);
extern void* memset(void*, int, size_t);
extern size_t strlen(const char*);
extern int vsnprintf(char*, size_t, const char*, va_list);
extern int pthread_mutex_lock(srm_mutex*);
extern int pthread_mutex_unlock(srm_mutex*);
extern int pthread_cond_wait(srm_cond*, srm_mutex*);
extern int pthread_cond_broadcast(srm_cond*);
extern int pthread_create(srm_thread*, const void*, void* (*)(void*), void*);
extern int pthread_join(srm_thread, void**);
extern int sched_yield(void);

#define SRM_HIDDEN __attribute__((visibility("hidden")))
#define SRM_MAX_THREADS 256
#define SRM_ALIGN 64
/* Waiting threads pause for SRM_PAUSE rounds, then yield the CPU (staying runnable) until SRM_SPIN
 * rounds, and only then sleep on a condition variable: a woken sleeper can wait milliseconds for a
 * CPU on a busy machine, a yielding spinner comes back within one scheduler turn (TVM's pool does the same).
 * Pausing 32x longer before yielding gained nothing consistent beside a busy process (0.79-1.16 of the
 * time; benchmarks/clib_contention.py, docs/benchmarks.md `clib_contention`). */
#ifndef SRM_PAUSE /* a benchmark links the runtime with another value (-DSRM_PAUSE=N) to compare */
#define SRM_PAUSE 256
#endif
#define SRM_SPIN 50000

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

static inline void cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static inline void cpu_relax(int spins) {
  if (spins < SRM_PAUSE) cpu_pause();
  else sched_yield();
}

/* ---- errors ------------------------------------------------------------------------------- */
/* Zero-filled static pthread objects are valid default mutexes/conds in glibc and bionic. */
static srm_mutex g_run_mu;   /* serialises create/destroy/run (one shared pool) */
static srm_mutex g_err_mu;   /* guards g_global_err and g_kernel_err */
static char g_global_err[512] = "no error";
static char g_kernel_err[512];

static void fmt(char* dst, size_t cap, const char* f, va_list ap) { vsnprintf(dst, cap, f, ap); }

static void append(char* dst, size_t cap, const char* s) {
  size_t n = strlen(dst);
  while (s && *s && n + 1 < cap) dst[n++] = *s++;
  dst[n] = 0;
}

/* Called by generated code on argument-check failures and kernel errors. */
SRM_HIDDEN void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts) {
  pthread_mutex_lock(&g_err_mu);
  g_kernel_err[0] = 0;
  append(g_kernel_err, sizeof(g_kernel_err), kind);
  append(g_kernel_err, sizeof(g_kernel_err), ": ");
  for (int32_t i = 0; i < num_parts; ++i) append(g_kernel_err, sizeof(g_kernel_err), parts[i]);
  pthread_mutex_unlock(&g_err_mu);
}

SRM_HIDDEN void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) {
  TVMFFIErrorSetRaisedFromCStrParts(kind, &message, 1);
}

/* ---- workspace ------------------------------------------------------------------------------ */
static void* aligned_alloc64(size_t n) {
  void* p = NULL;
  if (posix_memalign(&p, SRM_ALIGN, n ? n : SRM_ALIGN) != 0) return NULL;
  return p;
}

/* Kernels allocate their large temporaries (padded inputs, ...) on every call. Freed blocks are kept
 * for reuse: a fresh multi-MB malloc is a fresh mmap whose page faults cost milliseconds per frame. */
#define SRM_WS_SLOTS 32
static srm_mutex g_ws_mu;
static struct { void* ptr; size_t size; } g_ws_free[SRM_WS_SLOTS];
static struct { void* ptr; size_t size; } g_ws_used[SRM_WS_SLOTS * 4];

SRM_HIDDEN void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int code_hint,
                                          int bits_hint) {
  (void)device_type, (void)device_id, (void)code_hint, (void)bits_hint;
  size_t n = (size_t)nbytes, best = SRM_WS_SLOTS;
  void* p = NULL;
  pthread_mutex_lock(&g_ws_mu);
  for (size_t i = 0; i < SRM_WS_SLOTS; ++i)
    if (g_ws_free[i].ptr && g_ws_free[i].size >= n &&
        (best == SRM_WS_SLOTS || g_ws_free[i].size < g_ws_free[best].size))
      best = i;
  if (best < SRM_WS_SLOTS) {
    p = g_ws_free[best].ptr;
    n = g_ws_free[best].size;
    g_ws_free[best].ptr = NULL;
  }
  pthread_mutex_unlock(&g_ws_mu);
  if (!p) p = aligned_alloc64(n);
  if (!p) return NULL;
  pthread_mutex_lock(&g_ws_mu);
  for (size_t i = 0; i < SRM_WS_SLOTS * 4; ++i)
    if (!g_ws_used[i].ptr) { g_ws_used[i].ptr = p, g_ws_used[i].size = n; break; }
  pthread_mutex_unlock(&g_ws_mu); /* a block not recorded (table full) is simply freed, not kept */
  return p;
}

SRM_HIDDEN int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type, (void)device_id;
  size_t size = 0;
  int kept = 0;
  pthread_mutex_lock(&g_ws_mu);
  for (size_t i = 0; i < SRM_WS_SLOTS * 4; ++i)
    if (g_ws_used[i].ptr == ptr) { size = g_ws_used[i].size, g_ws_used[i].ptr = NULL; break; }
  for (size_t i = 0; size && i < SRM_WS_SLOTS; ++i)
    if (!g_ws_free[i].ptr) { g_ws_free[i].ptr = ptr, g_ws_free[i].size = size, kept = 1; break; }
  pthread_mutex_unlock(&g_ws_mu);
  if (!kept) free(ptr);
  return 0;
}

/* Give the kept blocks back (the last model is gone); called with g_run_mu held. */
static void workspace_release(void) {
  pthread_mutex_lock(&g_ws_mu);
  for (size_t i = 0; i < SRM_WS_SLOTS; ++i) {
    free(g_ws_free[i].ptr);
    g_ws_free[i].ptr = NULL;
  }
  pthread_mutex_unlock(&g_ws_mu);
}

/* ---- thread pool ------------------------------------------------------------------------------ */
typedef struct { void* sync_handle; int32_t num_task; } srm_group_env; /* TVMParallelGroupEnv */
typedef int (*srm_lambda)(int task_id, srm_group_env* env, void* cdata);

typedef struct { int id; unsigned gen0; } srm_worker_arg;

static struct {
  srm_mutex mu;
  srm_cond cv;
  int size; /* threads including the caller; 0 or 1: no workers */
  srm_thread th[SRM_MAX_THREADS];
  srm_worker_arg warg[SRM_MAX_THREADS];
  unsigned gen;
  int stop, sleepers, pending, err, busy;
  srm_lambda fn;
  void* cdata;
  int num_task;
  int bar_count;
  unsigned bar_sense;
} P;

static void* worker_main(void* argp) {
  srm_worker_arg* a = (srm_worker_arg*)argp;
  unsigned seen = a->gen0;
  for (;;) {
    int spins = 0;
    unsigned g;
    while ((g = LOAD(&P.gen)) == seen) {
      if (++spins < SRM_SPIN) { cpu_relax(spins); continue; }
      pthread_mutex_lock(&P.mu);
      ADD(&P.sleepers, 1);
      while (LOAD(&P.gen) == seen) pthread_cond_wait(&P.cv, &P.mu);
      ADD(&P.sleepers, -1);
      pthread_mutex_unlock(&P.mu);
      spins = 0;
    }
    seen = g;
    if (LOAD(&P.stop)) return NULL;
    if (a->id < P.num_task) {
      srm_group_env env = {NULL, P.num_task};
      int r = P.fn(a->id, &env, P.cdata);
      if (r != 0) STORE(&P.err, r);
    }
    ADD(&P.pending, -1);
  }
}

static void wake_all(void) {
  if (LOAD(&P.sleepers) > 0) {
    pthread_mutex_lock(&P.mu);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
  }
}

static void pool_stop(void) {
  if (P.size <= 1) { P.size = 0; return; }
  STORE(&P.stop, 1);
  pthread_mutex_lock(&P.mu);
  ADD(&P.gen, 1);
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);
  for (int i = 1; i < P.size; ++i) pthread_join(P.th[i], NULL);
  STORE(&P.stop, 0);
  P.size = 0;
}

/* Resize the pool to n threads (caller included); called with g_run_mu held. */
static int pool_resize(int n) {
  if (P.size == n) return 0;
  pool_stop();
  unsigned gen0 = LOAD(&P.gen);
  for (int i = 1; i < n; ++i) {
    P.warg[i].id = i;
    P.warg[i].gen0 = gen0;
    if (pthread_create(&P.th[i], NULL, worker_main, &P.warg[i]) != 0) {
      P.size = i; /* keep the ones that started so pool_stop joins them */
      pool_stop();
      return -1;
    }
  }
  P.size = n;
  return 0;
}

SRM_HIDDEN int TVMBackendParallelLaunch(srm_lambda fn, void* cdata, int num_task) {
  int n = P.size > 1 ? P.size : 1;
  if (num_task > 0 && num_task < n) n = num_task;
  if (n <= 1 || LOAD(&P.busy)) { /* one thread, or nested: run every task here */
    int tasks = n <= 1 ? 1 : n, err = 0;
    srm_group_env env = {NULL, tasks};
    for (int t = 0; t < tasks; ++t) {
      int r = fn(t, &env, cdata);
      if (r) err = r;
    }
    return err;
  }
  P.fn = fn;
  P.cdata = cdata;
  P.num_task = n;
  STORE(&P.err, 0);
  STORE(&P.busy, 1);
  STORE(&P.pending, P.size - 1);
  ADD(&P.gen, 1);
  wake_all();
  srm_group_env env = {NULL, n};
  int r0 = fn(0, &env, cdata);
  for (int spins = 0; LOAD(&P.pending) != 0; ++spins) {
    cpu_relax(spins);
  }
  STORE(&P.busy, 0);
  return r0 ? r0 : LOAD(&P.err);
}

SRM_HIDDEN int TVMBackendParallelBarrier(int task_id, srm_group_env* env) {
  (void)task_id;
  if (env->num_task <= 1) return 0;
  unsigned sense = LOAD(&P.bar_sense);
  if (ADD(&P.bar_count, 1) == env->num_task) {
    STORE(&P.bar_count, 0);
    ADD(&P.bar_sense, 1);
  } else {
    for (int spins = 0; LOAD(&P.bar_sense) == sense; ++spins) {
      cpu_relax(spins);
    }
  }
  return 0;
}

/* Non-system-lib TVM objects call the runtime through these pointers (weak in the kernel object). */
void* __TVMBackendParallelLaunch = (void*)TVMBackendParallelLaunch;
void* __TVMBackendParallelBarrier = (void*)TVMBackendParallelBarrier;
void* __TVMBackendAllocWorkspace = (void*)TVMBackendAllocWorkspace;
void* __TVMBackendFreeWorkspace = (void*)TVMBackendFreeWorkspace;
void* __TVMFFIErrorSetRaisedFromCStr = (void*)TVMFFIErrorSetRaisedFromCStr;
void* __TVMFFIErrorSetRaisedFromCStrParts = (void*)TVMFFIErrorSetRaisedFromCStrParts;

/* ---- the model ---------------------------------------------------------------------------------- */
/* A live handle starts with SRM_LIVE; destroy overwrites it with SRM_DEAD. The struct itself is never given
 * back to malloc but kept on a list for the next create, so a destroyed handle still points at readable,
 * poisoned memory: every call checks the magic and the common misuse (use after destroy, double destroy)
 * returns SRMODEL_ERR_ARG instead of touching freed memory. */
#define SRM_LIVE 0x314d5253u /* "SRM1" */
#define SRM_DEAD 0x44414544u /* "DEAD" */

struct srmodel {
  uint32_t magic;
  int threads;
  unsigned char* arena;
  srm_dltensor* tensors;
  srm_any* args;
  float* in_stage;  /* aligned copies for callers' unaligned buffers, and the rgb8 conversions */
  float* out_stage;
  char err[512];
  srmodel* next_dead; /* the list of destroyed handles waiting for reuse */
};

static int live_models;
static srmodel* g_dead; /* destroyed handles, reused by create; guarded by g_run_mu */

static int fail(srmodel* m, int code, const char* f, ...) {
  va_list ap;
  va_start(ap, f);
  if (m) fmt(m->err, sizeof(m->err), f, ap);
  else {
    pthread_mutex_lock(&g_err_mu);
    fmt(g_global_err, sizeof(g_global_err), f, ap);
    pthread_mutex_unlock(&g_err_mu);
  }
  va_end(ap);
  return code;
}

/* Nonzero when m is not a live model: the message goes to the global error (m's own may be stale). */
static int not_live(const srmodel* m, const char* fn) {
  if (!m) return fail(NULL, SRMODEL_ERR_ARG, "%s: model is NULL", fn);
  uint32_t magic = LOAD(&((srmodel*)m)->magic);
  if (magic == SRM_LIVE) return 0;
  return fail(NULL, SRMODEL_ERR_ARG, "%s: %s", fn,
              magic == SRM_DEAD ? "the model was destroyed" : "not a model handle (bad magic number)");
}

static uint64_t numel(const int64_t* s) { return (uint64_t)(s[0] * s[1] * s[2] * s[3]); }

int srmodel_abi_version(void) { return SRMODEL_ABI_VERSION; }

const char* srmodel_describe(void) { return srm_model_plan.describe; }

void srmodel_destroy(srmodel* m) {
  if (!m) return;
  pthread_mutex_lock(&g_run_mu); /* checked under the lock: two racing destroys free once */
  if (not_live(m, "srmodel_destroy")) {
    pthread_mutex_unlock(&g_run_mu);
    return;
  }
  free(m->arena);
  free(m->tensors);
  free(m->args);
  free(m->in_stage);
  free(m->out_stage);
  memset(m, 0, sizeof(*m));
  STORE(&m->magic, SRM_DEAD);
  m->next_dead = g_dead;
  g_dead = m;
  if (--live_models == 0) { /* no threads or kept memory left behind when the last model goes */
    pool_stop();
    workspace_release();
  }
  pthread_mutex_unlock(&g_run_mu);
}

/* The kept handles go when the library is unloaded (dlclose): after that no handle can be used anyway. */
__attribute__((destructor)) static void release_dead(void) {
  while (g_dead) {
    srmodel* m = g_dead;
    g_dead = m->next_dead;
    free(m);
  }
}

int srmodel_create(srmodel** out) {
  const srm_plan* p = &srm_model_plan;
  if (!out) return fail(NULL, SRMODEL_ERR_ARG, "srmodel_create: out is NULL");
  *out = NULL;
  char lacking[256];
  if (srm_cpu_missing(p->required_features, lacking, sizeof lacking))
    return fail(NULL, SRMODEL_ERR_CPU, "srmodel_create: this CPU lacks %s, which this library (target %s) was "
                "compiled to use; use a build for a plainer target", lacking, p->target);
  pthread_mutex_lock(&g_run_mu);
  srmodel* m = g_dead;
  if (m) g_dead = m->next_dead;
  pthread_mutex_unlock(&g_run_mu);
  if (!m) m = (srmodel*)malloc(sizeof(srmodel));
  if (!m) return fail(NULL, SRMODEL_ERR_NOMEM, "srmodel_create: out of memory");
  memset(m, 0, sizeof(*m));
  STORE(&m->magic, SRM_DEAD); /* not usable until fully built */
  m->threads = p->default_threads > 0 ? p->default_threads : 1;
  m->arena = (unsigned char*)aligned_alloc64((size_t)p->arena_bytes);
  m->tensors = (srm_dltensor*)malloc(sizeof(srm_dltensor) * (p->num_tensors ? p->num_tensors : 1));
  m->args = (srm_any*)malloc(sizeof(srm_any) * (p->max_args ? p->max_args : 1));
  if (!m->arena || !m->tensors || !m->args) {
    free(m->arena), free(m->tensors), free(m->args);
    memset(m, 0, sizeof(*m));
    STORE(&m->magic, SRM_DEAD);
    pthread_mutex_lock(&g_run_mu);
    m->next_dead = g_dead, g_dead = m;
    pthread_mutex_unlock(&g_run_mu);
    return fail(NULL, SRMODEL_ERR_NOMEM, "srmodel_create: out of memory for %llu arena bytes",
                (unsigned long long)p->arena_bytes);
  }
  for (uint32_t i = 0; i < p->num_tensors; ++i) {
    const srm_tensor_desc* d = &p->tensors[i];
    srm_dltensor* t = &m->tensors[i];
    t->data = d->region == SRM_REGION_ARENA   ? (void*)(m->arena + d->offset)
              : d->region == SRM_REGION_CONST ? (void*)(p->consts + d->offset)
                                              : NULL; /* input/output: set per run */
    t->device.device_type = 1; /* kDLCPU */
    t->device.device_id = 0;
    t->ndim = d->ndim;
    t->dtype.code = d->dtype_code;
    t->dtype.bits = d->dtype_bits;
    t->dtype.lanes = 1;
    t->shape = (int64_t*)(p->shapes + d->shape_at);
    t->strides = NULL;
    t->byte_offset = 0;
  }
  pthread_mutex_lock(&g_run_mu);
  ++live_models;
  STORE(&m->magic, SRM_LIVE);
  pthread_mutex_unlock(&g_run_mu);
  *out = m;
  return SRMODEL_OK;
}

int srmodel_input_shape(const srmodel* m, int64_t shape[4]) {
  if (not_live(m, "srmodel_input_shape")) return SRMODEL_ERR_ARG;
  if (!shape) return fail((srmodel*)m, SRMODEL_ERR_ARG, "srmodel_input_shape: shape is NULL");
  for (int i = 0; i < 4; ++i) shape[i] = srm_model_plan.input_shape[i];
  return SRMODEL_OK;
}

int srmodel_output_shape(const srmodel* m, int64_t shape[4]) {
  if (not_live(m, "srmodel_output_shape")) return SRMODEL_ERR_ARG;
  if (!shape) return fail((srmodel*)m, SRMODEL_ERR_ARG, "srmodel_output_shape: shape is NULL");
  for (int i = 0; i < 4; ++i) shape[i] = srm_model_plan.output_shape[i];
  return SRMODEL_OK;
}

int srmodel_set_threads(srmodel* m, int threads) {
  if (not_live(m, "srmodel_set_threads")) return SRMODEL_ERR_ARG;
  if (threads < 1 || threads > SRM_MAX_THREADS)
    return fail(m, SRMODEL_ERR_ARG, "srmodel_set_threads: threads must be 1..%d, got %d", SRM_MAX_THREADS, threads);
  m->threads = threads;
  return SRMODEL_OK;
}

int srmodel_get_threads(const srmodel* m) {
  if (not_live(m, "srmodel_get_threads")) return -1;
  return m->threads;
}

const char* srmodel_last_error(const srmodel* m) {
  return m && LOAD(&((srmodel*)m)->magic) == SRM_LIVE ? m->err : g_global_err;
}

static int is_aligned(const void* p) { return ((uintptr_t)p % SRM_ALIGN) == 0; }

static int stage(float** buf, uint64_t count) {
  if (!*buf) *buf = (float*)aligned_alloc64((size_t)count * sizeof(float));
  return *buf != NULL;
}

/* Run the plan on aligned buffers; called with g_run_mu held. */
static int run_plan(srmodel* m, const float* in, float* out) {
  const srm_plan* p = &srm_model_plan;
  if (pool_resize(m->threads) != 0)
    return fail(m, SRMODEL_ERR_THREAD, "srmodel_run: could not start %d threads", m->threads);
  for (uint32_t i = 0; i < p->num_tensors; ++i) {
    if (p->tensors[i].region == SRM_REGION_INPUT) m->tensors[i].data = (void*)(in + p->tensors[i].offset / 4);
    if (p->tensors[i].region == SRM_REGION_OUTPUT)
      m->tensors[i].data = (void*)((unsigned char*)out + p->tensors[i].offset);
  }
  for (uint32_t s = 0; s < p->num_steps; ++s) {
    const srm_step_desc* st = &p->steps[s];
    for (uint32_t a = 0; a < st->num_args; ++a) {
      m->args[a].type_index = SRM_FFI_DLTENSOR_PTR;
      m->args[a].zero_padding = 0;
      m->args[a].v.v_ptr = &m->tensors[p->args[st->first_arg + a]];
    }
    srm_any result;
    result.type_index = SRM_FFI_NONE;
    result.zero_padding = 0;
    result.v.v_int64 = 0;
    g_kernel_err[0] = 0;
    if (st->fn(NULL, m->args, (int32_t)st->num_args, &result) != 0) {
      pthread_mutex_lock(&g_err_mu);
      fail(m, SRMODEL_ERR_KERNEL, "kernel %s failed: %s", st->name, g_kernel_err[0] ? g_kernel_err : "(no message)");
      pthread_mutex_unlock(&g_err_mu);
      return SRMODEL_ERR_KERNEL;
    }
  }
  if (p->output_copy)
    memcpy(out, m->tensors[p->output_tensor].data, (size_t)numel(p->output_shape) * sizeof(float));
  return SRMODEL_OK;
}

int srmodel_run(srmodel* m, const float* input, size_t input_len, float* output, size_t output_len) {
  const srm_plan* p = &srm_model_plan;
  if (not_live(m, "srmodel_run")) return SRMODEL_ERR_ARG;
  if (!input || !output) return fail(m, SRMODEL_ERR_ARG, "srmodel_run: %s is NULL", input ? "output" : "input");
  uint64_t nin = numel(p->input_shape), nout = numel(p->output_shape);
  if (input_len != nin)
    return fail(m, SRMODEL_ERR_SIZE, "srmodel_run: input has %llu floats, the model takes %llu",
                (unsigned long long)input_len, (unsigned long long)nin);
  if (output_len != nout)
    return fail(m, SRMODEL_ERR_SIZE, "srmodel_run: output has %llu floats, the model writes %llu",
                (unsigned long long)output_len, (unsigned long long)nout);
  uintptr_t in0 = (uintptr_t)input, out0 = (uintptr_t)output; /* integers: no pointer arithmetic past objects */
  if (in0 < out0 + nout * sizeof(float) && out0 < in0 + nin * sizeof(float))
    return fail(m, SRMODEL_ERR_ARG, "srmodel_run: input and output overlap");
  pthread_mutex_lock(&g_run_mu);
  if (not_live(m, "srmodel_run")) { /* destroyed by another thread since the check above */
    pthread_mutex_unlock(&g_run_mu);
    return SRMODEL_ERR_ARG;
  }
  int rc = SRMODEL_OK;
  const float* in = input;
  float* out = output;
  if (!is_aligned(input)) {
    if (!stage(&m->in_stage, nin)) rc = fail(m, SRMODEL_ERR_NOMEM, "srmodel_run: out of memory");
    else memcpy(m->in_stage, input, (size_t)nin * sizeof(float)), in = m->in_stage;
  }
  if (rc == SRMODEL_OK && !is_aligned(output)) {
    if (!stage(&m->out_stage, nout)) rc = fail(m, SRMODEL_ERR_NOMEM, "srmodel_run: out of memory");
    else out = m->out_stage;
  }
  if (rc == SRMODEL_OK) rc = run_plan(m, in, out);
  if (rc == SRMODEL_OK && out != output) memcpy(output, out, (size_t)nout * sizeof(float));
  pthread_mutex_unlock(&g_run_mu);
  return rc;
}

int srmodel_run_rgb8(srmodel* m, const uint8_t* rgb, size_t rgb_len, uint8_t* out_rgb, size_t out_len) {
  const srm_plan* p = &srm_model_plan;
  if (not_live(m, "srmodel_run_rgb8")) return SRMODEL_ERR_ARG;
  if (!rgb || !out_rgb) return fail(m, SRMODEL_ERR_ARG, "srmodel_run_rgb8: %s is NULL", rgb ? "out_rgb" : "rgb");
  if (p->input_shape[0] != 1 || p->input_shape[1] != 3 || p->output_shape[1] != 3)
    return fail(m, SRMODEL_ERR_ARG, "srmodel_run_rgb8: the model is not 1x3xHxW -> 1x3xH'xW'");
  uint64_t nin = numel(p->input_shape), nout = numel(p->output_shape);
  if (rgb_len != nin)
    return fail(m, SRMODEL_ERR_SIZE, "srmodel_run_rgb8: rgb has %llu bytes, the model takes %lldx%lldx3 = %llu",
                (unsigned long long)rgb_len, (long long)p->input_shape[2], (long long)p->input_shape[3],
                (unsigned long long)nin);
  if (out_len != nout)
    return fail(m, SRMODEL_ERR_SIZE, "srmodel_run_rgb8: out_rgb has %llu bytes, the model writes %lldx%lldx3 = %llu",
                (unsigned long long)out_len, (long long)p->output_shape[2], (long long)p->output_shape[3],
                (unsigned long long)nout);
  pthread_mutex_lock(&g_run_mu);
  if (not_live(m, "srmodel_run_rgb8")) {
    pthread_mutex_unlock(&g_run_mu);
    return SRMODEL_ERR_ARG;
  }
  int rc = SRMODEL_OK;
  if (!stage(&m->in_stage, nin) || !stage(&m->out_stage, nout)) {
    rc = fail(m, SRMODEL_ERR_NOMEM, "srmodel_run_rgb8: out of memory");
  } else {
    uint64_t hw = nin / 3;
    for (uint64_t i = 0; i < hw; ++i)
      for (int c = 0; c < 3; ++c) m->in_stage[c * hw + i] = (float)rgb[i * 3 + c] * (1.0f / 255.0f);
    rc = run_plan(m, m->in_stage, m->out_stage);
    uint64_t ohw = nout / 3;
    for (uint64_t i = 0; rc == SRMODEL_OK && i < ohw; ++i)
      for (int c = 0; c < 3; ++c) {
        float v = m->out_stage[c * ohw + i] * 255.0f;
        v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
        out_rgb[i * 3 + c] = (uint8_t)(v + 0.5f);
      }
  }
  pthread_mutex_unlock(&g_run_mu);
  return rc;
}
