/* srmodel_bench: load a compiled srmodel library the way an app does (dlopen), run it, time it.
 *
 *   srmodel_bench LIB [-n RUNS] [-w WARMUP] [-t THREADS] [-i IN.f32] [-o OUT.f32]
 *
 * A bad argument (not a whole number, out of range, unknown) is one line "error: ..." and exit 2.
 * Prints one line: "median_ms=M min_ms=A max_ms=B runs=N threads=T" after the model's description.
 * -i feeds a raw float32 NCHW file (else a fixed ramp), -o writes the last output as raw float32.
 * For adb shell (Android) and qemu-aarch64 (linux-arm64). Freestanding like the runtime: no libc
 * headers, so it builds for glibc and bionic alike.
 */
#include <stddef.h>
#include <stdint.h>

typedef struct srmodel srmodel;
typedef struct { long tv_sec; long tv_nsec; } srm_timespec; /* LP64 struct timespec */
typedef struct srm_file srm_file;
extern int printf(const char*, ...);
extern srm_file* fopen(const char*, const char*);
extern size_t fread(void*, size_t, size_t, srm_file*);
extern size_t fwrite(const void*, size_t, size_t, srm_file*);
extern int fclose(srm_file*);
extern long strtol(const char*, char**, int);
extern int strcmp(const char*, const char*);
extern void* malloc(size_t);
extern void free(void*);
extern int posix_memalign(void**, size_t, size_t);
extern int clock_gettime(int, srm_timespec*);
extern void* dlopen(const char*, int);
extern void* dlsym(void*, const char*);
extern char* dlerror(void);
extern void qsort(void*, size_t, size_t, int (*)(const void*, const void*));

#define CLOCK_MONOTONIC_ 1 /* same value in glibc and bionic */
#define RTLD_NOW_ 2

typedef int (*create_fn)(srmodel**);
typedef void (*destroy_fn)(srmodel*);
typedef int (*shape_fn)(const srmodel*, int64_t*);
typedef int (*threads_fn)(srmodel*, int);
typedef int (*get_threads_fn)(const srmodel*);
typedef int (*run_fn)(srmodel*, const float*, size_t, float*, size_t);
typedef const char* (*err_fn)(const srmodel*);
typedef const char* (*desc_fn)(void);

static double now_ms(void) {
  srm_timespec t;
  clock_gettime(CLOCK_MONOTONIC_, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void* sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (!p) printf("error: %s not found in the library\n", name);
  return p;
}

/* A whole decimal argument in lo..hi (hi < LONG_MAX, so strtol's overflow value LONG_MAX/LONG_MIN is out of
 * range: no errno needed); else a one-line error and 0. */
static int parse_long(const char* opt, const char* s, long lo, long hi, long* out) {
  char* end = 0;
  long v = strtol(s, &end, 10);
  if (!(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) || end == s || *end || v < lo || v > hi) {
    printf("error: %s takes a whole number in %ld..%ld, got '%s'\n", opt, lo, hi, s);
    return 0;
  }
  *out = v;
  return 1;
}

/* a * b * ... of the model's shape as a count of floats whose byte size fits size_t; 0 if it does not. */
static size_t shape_floats(const int64_t* s) {
  size_t n = 1;
  for (int i = 0; i < 4; ++i)
    if (s[i] < 1 || __builtin_mul_overflow(n, (size_t)s[i], &n)) return 0;
  size_t bytes;
  return __builtin_mul_overflow(n, sizeof(float), &bytes) ? 0 : n;
}

#define MAX_RUNS 1000000L /* the timings array: 8 MB at most */
#define MAX_THREADS 256L  /* as srmodel_set_threads */

int main(int argc, char** argv) {
  const char *path = 0, *in_path = 0, *out_path = 0;
  long runs = 20, warmup = 3, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    int value = !strcmp(a, "-n") || !strcmp(a, "-w") || !strcmp(a, "-t") || !strcmp(a, "-i") || !strcmp(a, "-o");
    if (value && i + 1 >= argc) { printf("error: %s needs a value\n", a); return 2; }
    if (!strcmp(a, "-n")) { if (!parse_long(a, argv[++i], 1, MAX_RUNS, &runs)) return 2; }
    else if (!strcmp(a, "-w")) { if (!parse_long(a, argv[++i], 0, MAX_RUNS, &warmup)) return 2; }
    else if (!strcmp(a, "-t")) { if (!parse_long(a, argv[++i], 1, MAX_THREADS, &threads)) return 2; }
    else if (!strcmp(a, "-i")) in_path = argv[++i];
    else if (!strcmp(a, "-o")) out_path = argv[++i];
    else if (!path && a[0] != '-' && a[0]) path = a;
    else { printf("error: unknown argument %s\n", a); return 2; }
  }
  if (!path) {
    printf("usage: srmodel_bench LIB [-n RUNS 1..%ld] [-w WARMUP 0..%ld] [-t THREADS 1..%ld] [-i IN.f32] "
           "[-o OUT.f32]\n", MAX_RUNS, MAX_RUNS, MAX_THREADS);
    return 2;
  }
  void* lib = dlopen(path, RTLD_NOW_);
  if (!lib) { printf("error: cannot load %s: %s\n", path, dlerror()); return 1; }
  create_fn create = (create_fn)sym(lib, "srmodel_create");
  destroy_fn destroy = (destroy_fn)sym(lib, "srmodel_destroy");
  shape_fn in_shape = (shape_fn)sym(lib, "srmodel_input_shape"), out_shape = (shape_fn)sym(lib, "srmodel_output_shape");
  threads_fn set_threads = (threads_fn)sym(lib, "srmodel_set_threads");
  get_threads_fn get_threads = (get_threads_fn)sym(lib, "srmodel_get_threads");
  run_fn run = (run_fn)sym(lib, "srmodel_run");
  err_fn last_error = (err_fn)sym(lib, "srmodel_last_error");
  desc_fn describe = (desc_fn)sym(lib, "srmodel_describe");
  if (!create || !destroy || !in_shape || !out_shape || !set_threads || !get_threads || !run || !last_error ||
      !describe)
    return 1;
  srmodel* m = 0;
  if (create(&m)) { printf("error: %s\n", last_error(0)); return 1; }
  if (threads > 0 && set_threads(m, (int)threads)) { printf("error: %s\n", last_error(m)); return 1; }
  int64_t si[4], so[4];
  size_t nin = 0, nout = 0;
  if (!in_shape(m, si) && !out_shape(m, so)) nin = shape_floats(si), nout = shape_floats(so);
  if (!nin || !nout) { printf("error: the library reports an invalid shape\n"); return 1; }
  void *pin = 0, *pout = 0;
  double* times = (double*)malloc(sizeof(double) * (size_t)runs);
  if (posix_memalign(&pin, 64, nin * 4) || posix_memalign(&pout, 64, nout * 4) || !times) {
    printf("error: out of memory\n");
    return 1;
  }
  float *x = (float*)pin, *y = (float*)pout;
  if (in_path) {
    srm_file* f = fopen(in_path, "rb");
    if (!f || fread(x, 4, nin, f) != nin) { printf("error: %s does not hold %zu floats\n", in_path, nin); return 1; }
    fclose(f);
  } else {
    for (size_t i = 0; i < nin; ++i) x[i] = (float)(i % 251) / 250.0f;
  }
  for (long i = 0; i < warmup; ++i)
    if (run(m, x, nin, y, nout)) { printf("error: %s\n", last_error(m)); return 1; }
  for (long i = 0; i < runs; ++i) {
    double t0 = now_ms();
    if (run(m, x, nin, y, nout)) { printf("error: %s\n", last_error(m)); return 1; }
    times[i] = now_ms() - t0;
  }
  qsort(times, (size_t)runs, sizeof(double), cmp);
  double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
  printf("%s\n", describe());
  printf("median_ms=%.3f min_ms=%.3f max_ms=%.3f runs=%ld threads=%d\n", median, times[0], times[runs - 1], runs,
         get_threads(m));
  if (out_path) {
    srm_file* f = fopen(out_path, "wb");
    if (!f || fwrite(y, 4, nout, f) != nout) { printf("error: cannot write %s\n", out_path); return 1; }
    fclose(f);
  }
  destroy(m);
  free(times), free(pin), free(pout);
  return 0;
}
