/* sr_engine.c: see sr_engine.h. Freestanding like sr_core.c (no libc headers). */
#include "sr_engine.h"

#include "sr_core.h"
#include "srmodel.h"

extern void* malloc(size_t);
extern void* calloc(size_t, size_t);
extern void free(void*);
extern int snprintf(char*, size_t, const char*, ...);
extern void* dlopen(const char*, int);
extern void* dlsym(void*, const char*);
extern int dlclose(void*);
extern char* dlerror(void);
typedef struct { long tv_sec; long tv_nsec; } sre_timespec; /* LP64 struct timespec */
extern int clock_gettime(int, sre_timespec*);

#define RTLD_NOW_ 2        /* same value in glibc and bionic */
#define CLOCK_MONOTONIC_ 1 /* same value in glibc and bionic */

struct sre_engine {
  void* lib;
  srmodel* model;
  int (*create)(srmodel**);
  void (*destroy)(srmodel*);
  int (*in_shape)(const srmodel*, int64_t*);
  int (*out_shape)(const srmodel*, int64_t*);
  int (*set_threads)(srmodel*, int);
  int (*get_threads)(const srmodel*);
  int (*run_rgb8)(srmodel*, const uint8_t*, size_t, uint8_t*, size_t);
  const char* (*last_error)(const srmodel*);
  const char* (*describe)(void);
  int (*abi_version)(void);
  int in_w, in_h, out_w, out_h;
  uint8_t *in_rgb, *out_rgb;
  char error[256];
};

static double now_ms(void) {
  sre_timespec t;
  clock_gettime(CLOCK_MONOTONIC_, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static void* need(sre_engine* e, const char* name, char* err, size_t err_len) {
  void* p = dlsym(e->lib, name);
  if (!p && err) snprintf(err, err_len, "%s is not in the model library (not an srprune c-lib?)", name);
  return p;
}

sre_engine* sre_open(const char* path, int threads, char* err, size_t err_len) {
  sre_engine* e = calloc(1, sizeof(sre_engine));
  if (!e) {
    if (err) snprintf(err, err_len, "out of memory");
    return 0;
  }
  e->lib = dlopen(path, RTLD_NOW_);
  if (!e->lib) {
    const char* why = dlerror();
    if (err) snprintf(err, err_len, "cannot load the model library %s: %s", path, why ? why : "unknown reason");
    free(e);
    return 0;
  }
#define SYM(field, name)                                         \
  if (!(*(void**)&e->field = need(e, name, err, err_len))) { \
    sre_close(e);                                                \
    return 0;                                                    \
  }
  SYM(abi_version, "srmodel_abi_version")
  SYM(create, "srmodel_create")
  SYM(destroy, "srmodel_destroy")
  SYM(in_shape, "srmodel_input_shape")
  SYM(out_shape, "srmodel_output_shape")
  SYM(set_threads, "srmodel_set_threads")
  SYM(get_threads, "srmodel_get_threads")
  SYM(run_rgb8, "srmodel_run_rgb8")
  SYM(last_error, "srmodel_last_error")
  SYM(describe, "srmodel_describe")
#undef SYM
  if (e->abi_version() != SRMODEL_ABI_VERSION) {
    if (err) snprintf(err, err_len, "model library ABI %d, the app needs %d: re-stage the model", e->abi_version(),
                      SRMODEL_ABI_VERSION);
    sre_close(e);
    return 0;
  }
  if (e->create(&e->model) != SRMODEL_OK) {
    if (err) snprintf(err, err_len, "cannot create the model: %s", e->last_error(0));
    sre_close(e);
    return 0;
  }
  int64_t si[4], so[4];
  e->in_shape(e->model, si);
  e->out_shape(e->model, so);
  if (si[0] != 1 || si[1] != 3 || so[0] != 1 || so[1] != 3 || si[2] < 1 || si[3] < 1 || so[2] < 1 || so[3] < 1 ||
      si[2] > SRC_MAX_SIDE || si[3] > SRC_MAX_SIDE || so[2] > SRC_MAX_SIDE || so[3] > SRC_MAX_SIDE) {
    if (err) snprintf(err, err_len, "the model is not an RGB single-frame model of at most %d pixels a side "
                      "(input %lldx%lldx%lldx%lld)", SRC_MAX_SIDE,
                      (long long)si[0], (long long)si[1], (long long)si[2], (long long)si[3]);
    sre_close(e);
    return 0;
  }
  e->in_h = (int)si[2], e->in_w = (int)si[3], e->out_h = (int)so[2], e->out_w = (int)so[3];
  e->in_rgb = malloc((size_t)e->in_w * e->in_h * 3);
  e->out_rgb = malloc((size_t)e->out_w * e->out_h * 3);
  if (!e->in_rgb || !e->out_rgb) {
    if (err) snprintf(err, err_len, "out of memory for %dx%d frames", e->out_w, e->out_h);
    sre_close(e);
    return 0;
  }
  if (threads > 0 && e->set_threads(e->model, threads) != SRMODEL_OK) {
    if (err) snprintf(err, err_len, "%s", e->last_error(e->model));
    sre_close(e);
    return 0;
  }
  return e;
}

void sre_close(sre_engine* e) {
  if (!e) return;
  if (e->model && e->destroy) e->destroy(e->model);
  if (e->lib) dlclose(e->lib);
  free(e->in_rgb), free(e->out_rgb), free(e);
}

/* A NULL engine (closed) is refused by every call below, never dereferenced. */
static const char closed_msg[] = "the engine is closed";

void sre_sizes(const sre_engine* e, int* in_w, int* in_h, int* out_w, int* out_h) {
  *in_w = e ? e->in_w : 0, *in_h = e ? e->in_h : 0, *out_w = e ? e->out_w : 0, *out_h = e ? e->out_h : 0;
}

const char* sre_describe(const sre_engine* e) { return e ? e->describe() : closed_msg; }

int sre_set_threads(sre_engine* e, int threads) {
  if (!e) return SRMODEL_ERR_ARG;
  int rc = e->set_threads(e->model, threads);
  if (rc) snprintf(e->error, sizeof e->error, "%s", e->last_error(e->model));
  return rc;
}

int sre_get_threads(const sre_engine* e) { return e ? e->get_threads(e->model) : -1; }

int sre_run_rgba(sre_engine* e, const uint8_t* in, size_t in_stride, uint8_t* out, size_t out_stride,
                 double* model_ms) {
  if (!e) return SRMODEL_ERR_ARG;
  if (!in || !out || in_stride < (size_t)e->in_w * 4 || out_stride < (size_t)e->out_w * 4) {
    snprintf(e->error, sizeof e->error, "frame buffers are NULL or have rows shorter than the model's frames");
    return SRMODEL_ERR_ARG;
  }
  src_rgba_to_rgb(in, in_stride, e->in_w, e->in_h, e->in_rgb);
  double t0 = now_ms();
  int rc = e->run_rgb8(e->model, e->in_rgb, (size_t)e->in_w * e->in_h * 3, e->out_rgb,
                       (size_t)e->out_w * e->out_h * 3);
  if (model_ms) *model_ms = now_ms() - t0;
  if (rc) {
    snprintf(e->error, sizeof e->error, "%s", e->last_error(e->model));
    return rc;
  }
  src_rgb_to_rgba(e->out_rgb, e->out_w, e->out_h, out, out_stride);
  return SRMODEL_OK;
}

const char* sre_error(const sre_engine* e) { return e ? e->error : closed_msg; }
