/* Memory bandwidth as the emitted kernels see it: STREAM's "scale" (b = s * a) on float32 arrays, one pinned thread
 * per CPU, each on its own slice (first touched by that thread).
 *
 * Usage: mem_bandwidth BYTES REPEATS CPU [CPU ...]
 * BYTES is the size of each of the two arrays (split evenly over the threads). Prints "threads T bytes B" and one
 * "seconds S" line per repeat: the wall time from the first thread's start to the last thread's end (threads wait on
 * a barrier first). GB/s = 2 * B / S / 1e9 (STREAM's convention: the bytes the code reads and writes; a store's
 * read-for-ownership is not counted, as it is not in a kernel's traffic either).
 *
 * A scale, not a copy: a copy loop may be turned into memcpy, whose non-temporal stores no kernel of ours uses.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    int cpu;
    long n;
    pthread_barrier_t *barrier;
    float *a, *b;
    int repeats;
    double *start, *end; /* per repeat */
} job;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

__attribute__((noinline, optimize("O3"))) static void scale(float *restrict b, const float *restrict a, long n, float s) {
    for (long i = 0; i < n; i++) b[i] = s * a[i];
}

static void *run(void *arg) {
    job *j = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(j->cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
        fprintf(stderr, "warning: could not pin a thread to CPU %d\n", j->cpu);
    j->a = aligned_alloc(64, (size_t)j->n * sizeof(float) + 64);
    j->b = aligned_alloc(64, (size_t)j->n * sizeof(float) + 64);
    for (long i = 0; i < j->n; i++) { j->a[i] = 1.0f; j->b[i] = 0.0f; } /* first touch: pages on this thread's node */
    volatile float s = 0.5f;
    for (int r = 0; r < j->repeats; r++) {
        pthread_barrier_wait(j->barrier);
        j->start[r] = now();
        scale(j->b, j->a, j->n, s);
        j->end[r] = now();
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s BYTES REPEATS CPU [CPU ...]\n", argv[0]);
        return 2;
    }
    long bytes = atol(argv[1]);
    int repeats = atoi(argv[2]), threads = argc - 3;
    long n = bytes / (long)sizeof(float) / threads;
    job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){.cpu = atoi(argv[3 + t]), .n = n, .barrier = &barrier, .repeats = repeats,
                        .start = calloc((size_t)repeats, sizeof(double)), .end = calloc((size_t)repeats, sizeof(double))};
        pthread_create(&tids[t], NULL, run, &jobs[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    printf("threads %d bytes %ld\n", threads, n * (long)sizeof(float) * threads);
    double sink = 0.0;
    for (int r = 0; r < repeats; r++) {
        double first = jobs[0].start[r], last = jobs[0].end[r];
        for (int t = 1; t < threads; t++) {
            if (jobs[t].start[r] < first) first = jobs[t].start[r];
            if (jobs[t].end[r] > last) last = jobs[t].end[r];
        }
        printf("seconds %.9f\n", last - first);
    }
    for (int t = 0; t < threads; t++) sink += jobs[t].b[n / 2];
    fprintf(stderr, "checksum %g\n", sink); /* keeps the results live */
    pthread_barrier_destroy(&barrier);
    return 0;
}
