/* fp32 FMA ceiling: independent FMA chains on the widest vectors the CPU has, one pinned thread per CPU.
 *
 * Usage: fma_ceiling ITERATIONS REPEATS CPU [CPU ...]
 * Prints "isa NAME lanes L chains C threads T iterations N" and one "seconds S" line per repeat, where S is the
 * wall time from the first thread's start to the last thread's end (threads wait on a barrier first). Each thread
 * runs N iterations of C independent FMAs of L lanes: GFLOP/s = T * N * C * L * 2 / S / 1e9 (computed by the caller).
 *
 * Explicit intrinsics fix the instruction and the width (a vectorised loop would follow the compiler's cost model,
 * e.g. GCC keeps ymm on some AVX-512 parts); CHAINS covers FMA latency x FMA units (4 x 2 on x86, 4 x 4 on big
 * arm64 cores) while leaving registers for the two constants (16 ymm on AVX2, 32 zmm / NEON registers otherwise).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define ISA "avx512"
#define LANES 16
#define CHAINS 16
#define SET1(x) _mm512_set1_ps(x)
#define FMA(acc, m, b) _mm512_fmadd_ps(acc, m, b)
#define STORE(p, v) _mm512_storeu_ps(p, v)
#elif defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
typedef __m256 vec;
#define ISA "avx2"
#define LANES 8
#define CHAINS 12
#define SET1(x) _mm256_set1_ps(x)
#define FMA(acc, m, b) _mm256_fmadd_ps(acc, m, b)
#define STORE(p, v) _mm256_storeu_ps(p, v)
#elif defined(__aarch64__)
#include <arm_neon.h>
typedef float32x4_t vec;
#define ISA "neon"
#define LANES 4
#define CHAINS 16
#define SET1(x) vdupq_n_f32(x)
#define FMA(acc, m, b) vfmaq_f32(b, acc, m)
#define STORE(p, v) vst1q_f32(p, v)
#else
#error "no vector FMA on this target (needs AVX-512F, AVX2+FMA or aarch64 NEON)"
#endif

#if CHAINS == 16
#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#else
#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#endif

typedef struct {
    int cpu;
    long long iterations;
    pthread_barrier_t *barrier;
    struct timespec start, end;
    float sink;
} job;

/* acc = acc * m + b with m just below 1: each chain converges to b / (1 - m), no overflow or denormals. */
__attribute__((noinline)) static float chains(long long iterations, float m_in, float b_in) {
    vec m = SET1(m_in), b = SET1(b_in);
#define DECLARE(i) vec acc##i = SET1((float)(i));
#define STEP(i) acc##i = FMA(acc##i, m, b);
#define SUM(i) STORE(out, acc##i); for (int l = 0; l < LANES; l++) total += out[l];
    EACH(DECLARE)
    for (long long n = 0; n < iterations; n++) {
        EACH(STEP)
    }
    float out[LANES], total = 0.0f;
    EACH(SUM)
    return total;
}

static void *run(void *arg) {
    job *j = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(j->cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
        fprintf(stderr, "warning: could not pin a thread to CPU %d\n", j->cpu);
    volatile float m = 0.999999f, b = 1e-6f; /* volatile: the compiler cannot fold the chains */
    pthread_barrier_wait(j->barrier);
    clock_gettime(CLOCK_MONOTONIC, &j->start);
    j->sink = chains(j->iterations, m, b);
    clock_gettime(CLOCK_MONOTONIC, &j->end);
    return NULL;
}

static double seconds(struct timespec t) { return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec; }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s ITERATIONS REPEATS CPU [CPU ...]\n", argv[0]);
        return 2;
    }
    long long iterations = atoll(argv[1]);
    int repeats = atoi(argv[2]), threads = argc - 3;
    job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    pthread_barrier_t barrier;
    float sink = 0.0f;
    printf("isa %s lanes %d chains %d threads %d iterations %lld\n", ISA, LANES, CHAINS, threads, iterations);
    for (int r = 0; r < repeats; r++) {
        pthread_barrier_init(&barrier, NULL, (unsigned)threads);
        for (int t = 0; t < threads; t++) {
            jobs[t] = (job){.cpu = atoi(argv[3 + t]), .iterations = iterations, .barrier = &barrier};
            pthread_create(&tids[t], NULL, run, &jobs[t]);
        }
        double first = 0.0, last = 0.0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tids[t], NULL);
            double s = seconds(jobs[t].start), e = seconds(jobs[t].end);
            if (t == 0 || s < first) first = s;
            if (t == 0 || e > last) last = e;
            sink += jobs[t].sink;
        }
        pthread_barrier_destroy(&barrier);
        printf("seconds %.9f\n", last - first);
    }
    fprintf(stderr, "checksum %g\n", (double)sink); /* keeps the results live */
    free(jobs);
    free(tids);
    return 0;
}
