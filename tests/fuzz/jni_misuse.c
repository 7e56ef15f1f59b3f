/* jni_misuse: every reachable misuse of the JNI layer (sr_jni.c), called through the fake JNIEnv on the host.
 *
 *   jni_misuse MODEL.so
 *
 * Built with AddressSanitizer + UBSan by scripts/fuzz.py; run by tests/test_fuzz.py, which holds the expected
 * exception of each case. Prints one line per case, "CASE<TAB>CLASS<TAB>MESSAGE" (CLASS "-" when nothing
 * was thrown), then "violations=N" (JNI calls made with an exception pending).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fake_jni.h"

static JNIEnv* env;

static void report(const char* name) {
  printf("%s\t%s\t%s\n", name, fj.pending ? fj.cls : "-", fj.pending ? fj.msg : "");
  fflush(stdout);
  fj_clear();
}

/* A direct buffer of exactly cap bytes (malloc'ed: AddressSanitizer sees one byte past its end). */
static fj_buffer direct(size_t cap) {
  fj_buffer b = {calloc(cap ? cap : 1, 1), (jlong)cap, 1};
  return b;
}

#define BUF(b) ((jobject)&(b))

static void bicubic(const char* name, jint w, jint h, jint scale, size_t in_cap, size_t out_cap) {
  fj_buffer in = direct(in_cap), out = direct(out_cap);
  FJ_NATIVE(nativeBicubic)(env, NULL, BUF(in), w, h, scale, BUF(out));
  report(name);
  free(in.addr), free(out.addr);
}

static void quality(const char* name, jint w, jint h, jint crop, size_t cap_a, size_t cap_b) {
  fj_buffer a = direct(cap_a), b = direct(cap_b);
  jdoubleArray v = FJ_NATIVE(nativeQuality)(env, NULL, BUF(a), BUF(b), w, h, crop);
  if (v && !fj.pending) printf("%s-values\t-\tpsnr=%g ssim=%g\n", name, fj.doubles[0], fj.doubles[1]);
  report(name);
  free(a.addr), free(b.addr);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    printf("usage: jni_misuse MODEL.so\n");
    return 2;
  }
  env = fj_env();
  fj_buffer frame = direct(1 << 20), frame2 = direct(1 << 20);

  /* a closed engine: NativeEngine.close() leaves handle 0 */
  FJ_NATIVE(nativeSizes)(env, NULL, 0);
  report("closed_sizes");
  FJ_NATIVE(nativeDescribe)(env, NULL, 0);
  report("closed_describe");
  FJ_NATIVE(nativeSetThreads)(env, NULL, 0, 2);
  report("closed_set_threads");
  FJ_NATIVE(nativeUpscale)(env, NULL, 0, BUF(frame), BUF(frame2));
  report("closed_upscale");
  FJ_NATIVE(nativeClose)(env, NULL, 0);
  report("closed_close");

  /* open */
  fj_string model = {argv[1]}, missing = {"/nonexistent/libsrmodel.so"}, foreign = {"libm.so.6"};
  FJ_NATIVE(nativeOpen)(env, NULL, NULL, 1);
  report("open_null_path");
  FJ_NATIVE(nativeOpen)(env, NULL, (jstring)&model, -1);
  report("open_threads_negative");
  FJ_NATIVE(nativeOpen)(env, NULL, (jstring)&model, 257);
  report("open_threads_257");
  FJ_NATIVE(nativeOpen)(env, NULL, (jstring)&missing, 1);
  report("open_missing_library");
  FJ_NATIVE(nativeOpen)(env, NULL, (jstring)&foreign, 1);
  report("open_foreign_library");
  jlong h = FJ_NATIVE(nativeOpen)(env, NULL, (jstring)&model, 1);
  report("open_model");
  if (!h) return 1;

  /* a live engine */
  FJ_NATIVE(nativeSizes)(env, NULL, h);
  jint iw = fj.ints[0], ih = fj.ints[1], ow = fj.ints[2], oh = fj.ints[3];
  printf("sizes_values\t-\t%dx%d->%dx%d\n", (int)iw, (int)ih, (int)ow, (int)oh);
  report("sizes");
  const jint bad_threads[] = {0, -3, 257, INT_MIN, INT_MAX};
  const char* thread_names[] = {"threads_0", "threads_minus_3", "threads_257", "threads_int_min", "threads_int_max"};
  for (int i = 0; i < 5; ++i) {
    FJ_NATIVE(nativeSetThreads)(env, NULL, h, bad_threads[i]);
    report(thread_names[i]);
  }
  FJ_NATIVE(nativeSetThreads)(env, NULL, h, 2);
  report("threads_2");
  size_t in_bytes = (size_t)iw * ih * 4, out_bytes = (size_t)ow * oh * 4;
  fj_buffer in = direct(in_bytes), out = direct(out_bytes), short_in = direct(in_bytes - 1),
            short_out = direct(out_bytes - 1), heap = {in.addr, (jlong)in_bytes, 0};
  FJ_NATIVE(nativeUpscale)(env, NULL, h, NULL, BUF(out));
  report("upscale_null_in");
  FJ_NATIVE(nativeUpscale)(env, NULL, h, BUF(in), NULL);
  report("upscale_null_out");
  FJ_NATIVE(nativeUpscale)(env, NULL, h, BUF(heap), BUF(out));
  report("upscale_not_direct");
  FJ_NATIVE(nativeUpscale)(env, NULL, h, BUF(short_in), BUF(out));
  report("upscale_short_in");
  FJ_NATIVE(nativeUpscale)(env, NULL, h, BUF(in), BUF(short_out));
  report("upscale_short_out");
  double ms = FJ_NATIVE(nativeUpscale)(env, NULL, h, BUF(in), BUF(out));
  printf("upscale_ms\t-\t%s\n", ms >= 0 ? "nonnegative" : "negative");
  report("upscale_ok");
  FJ_NATIVE(nativeDescribe)(env, NULL, h);
  printf("describe_text\t-\t%s\n", fj.pending ? "" : fj.string);
  report("describe");
  FJ_NATIVE(nativeClose)(env, NULL, h);
  report("close");
  free(in.addr), free(out.addr), free(short_in.addr), free(short_out.addr);

  /* bicubic: sizes, scale, buffers */
  bicubic("bicubic_zero_w", 0, 4, 2, 64, 1024);
  bicubic("bicubic_negative_h", 4, -4, 2, 64, 1024);
  bicubic("bicubic_zero_scale", 4, 4, 0, 64, 1024);
  bicubic("bicubic_int_min", INT_MIN, INT_MIN, INT_MIN, 64, 1024);
  bicubic("bicubic_output_side_over_limit", 65536, 1, 2, 64, 1024);
  bicubic("bicubic_w_times_scale_wraps_int", 65536, 1, 65536, 64, 1024); /* 2^32: 0 in int */
  bicubic("bicubic_scale_int_max", 2, 2, INT_MAX, 64, 1024);
  bicubic("bicubic_w_h_product_wraps_int", 46341, 46341, 1, 64, 1024);   /* w*h*4 > INT_MAX */
  bicubic("bicubic_short_in", 4, 3, 2, 4 * 3 * 4 - 1, 8 * 6 * 4);
  bicubic("bicubic_short_out", 4, 3, 2, 4 * 3 * 4, 8 * 6 * 4 - 1);
  {
    fj_buffer out6 = direct(8 * 6 * 4), heap6 = {out6.addr, 8 * 6 * 4, 0};
    FJ_NATIVE(nativeBicubic)(env, NULL, NULL, 4, 3, 2, BUF(out6));
    report("bicubic_null_in");
    FJ_NATIVE(nativeBicubic)(env, NULL, BUF(frame), 4, 3, 2, NULL);
    report("bicubic_null_out");
    FJ_NATIVE(nativeBicubic)(env, NULL, BUF(frame), 4, 3, 2, BUF(heap6));
    report("bicubic_not_direct");
    free(out6.addr);
  }
  bicubic("bicubic_ok", 4, 3, 2, 4 * 3 * 4, 8 * 6 * 4);

  /* quality: sizes, crop, buffers */
  quality("quality_crop_negative", 32, 32, -1, 4096, 4096);
  quality("quality_crop_huge", 32, 32, 1 << 30, 4096, 4096);   /* 2 * crop wraps in int */
  quality("quality_crop_int_max", 32, 32, INT_MAX, 4096, 4096);
  quality("quality_crop_leaves_10", 30, 32, 10, 4096, 4096);   /* 30 - 20 = 10 < 11 */
  quality("quality_too_small", 10, 32, 0, 4096, 4096);
  quality("quality_w_int_max", INT_MAX, 32, 0, 4096, 4096);
  quality("quality_negative_h", 32, -32, 0, 4096, 4096);
  quality("quality_w_h_product_wraps_int", 46341, 46341, 0, 4096, 4096);
  quality("quality_short_result", 32, 32, 2, 32 * 32 * 4 - 1, 4096);
  quality("quality_short_truth", 32, 32, 2, 4096, 32 * 32 * 4 - 1);
  {
    fj_buffer q = direct(4096), heap_q = {q.addr, 4096, 0};
    FJ_NATIVE(nativeQuality)(env, NULL, NULL, BUF(q), 32, 32, 2);
    report("quality_null_result");
    FJ_NATIVE(nativeQuality)(env, NULL, BUF(q), BUF(heap_q), 32, 32, 2);
    report("quality_not_direct");
    free(q.addr);
  }
  quality("quality_ok", 32, 32, 10, 32 * 32 * 4, 32 * 32 * 4);   /* crop = (32 - 11) / 2: the largest */

  free(frame.addr), free(frame2.addr);
  printf("violations=%d\n", fj.violations);
  return 0;
}
