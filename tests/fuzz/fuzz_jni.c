/* fuzz_jni: libFuzzer harness for the JNI layer's natives (android_app/app/src/main/cpp/sr_jni.c) on the host,
 * called through the fake JNIEnv (fake_jni.h). A small compiled model (env SRPRUNE_FUZZ_MODEL, built by
 * scripts/fuzz.py) is opened once; the bytes choose calls with any sizes, scales, crops and thread counts,
 * direct / non-direct / NULL buffers of any capacity (malloc'ed at exactly that size, so AddressSanitizer sees
 * a read or write past it), handle 0 (a closed engine), and open / close of missing libraries.
 * The harness traps when a call throws anything but IllegalArgumentException / IllegalStateException /
 * OutOfMemoryError, when a valid call throws, or when a JNI function is called with an exception pending.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_jni.h"
#include "fuzz_input.h"

#define CHECK(c) \
  do {           \
    if (!(c)) __builtin_trap(); \
  } while (0)
#define MAX_CAP (64 * 1024) /* buffer capacities the harness allocates */

static JNIEnv* env;
static jlong engine; /* the model, open for the whole run */
static jint iw, ih, ow, oh;

int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc, (void)argv;
  env = fj_env();
  const char* path = getenv("SRPRUNE_FUZZ_MODEL");
  if (!path) {
    fprintf(stderr, "fuzz_jni: set SRPRUNE_FUZZ_MODEL to a host libsrmodel.so\n");
    abort();
  }
  fj_string s = {path};
  engine = FJ_NATIVE(nativeOpen)(env, NULL, (jstring)&s, 1);
  if (!engine || fj.pending) {
    fprintf(stderr, "fuzz_jni: cannot open %s: %s\n", path, fj.msg);
    abort();
  }
  FJ_NATIVE(nativeSizes)(env, NULL, engine);
  iw = fj.ints[0], ih = fj.ints[1], ow = fj.ints[2], oh = fj.ints[3];
  return 0;
}

/* A buffer chosen by the input: NULL, non-direct, or direct of `want` bytes, one less, or any size. */
typedef struct { fj_buffer b; int kind; } fz_buf;
static jobject make_buf(fz_in* in, fz_buf* fb, size_t want) {
  uint8_t sel = fz_u8(in);
  size_t cap = sel % 4 == 0 ? want : sel % 4 == 1 ? (want ? want - 1 : 0) : (size_t)(fz_bytes(in, 3) % MAX_CAP);
  if (cap > MAX_CAP) cap = MAX_CAP; /* a valid size the harness will not allocate: then a short buffer */
  fb->kind = sel / 4 % 8; /* 0: NULL, 1: not direct, else direct */
  fb->b.addr = calloc(cap ? cap : 1, 1);
  fb->b.cap = (jlong)cap;
  fb->b.direct = fb->kind != 1;
  if (fb->b.addr && cap) memset(fb->b.addr, sel, cap);
  return fb->kind == 0 ? NULL : (jobject)&fb->b;
}

/* The exception pending after a call is one of the three the Java side expects; cleared. */
static int settle(void) {
  CHECK(fj.violations == 0);
  int threw = fj.pending;
  if (threw)
    CHECK(!strcmp(fj.cls, "java/lang/IllegalArgumentException") || !strcmp(fj.cls, "java/lang/IllegalStateException") ||
          !strcmp(fj.cls, "java/lang/OutOfMemoryError"));
  fj_clear();
  return threw;
}

static int usable(const fz_buf* fb, size_t want) { return fb->kind >= 2 && (size_t)fb->b.cap >= want; }

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_in in = {data, size};
  for (int op = 0; op < 8 && in.n; ++op) {
    uint8_t code = fz_u8(&in);
    jlong h = code & 0x80 ? 0 : engine; /* 0: what NativeEngine.close() leaves */
    switch (code % 8) {
      case 0:
        FJ_NATIVE(nativeSizes)(env, NULL, h);
        CHECK(settle() == (h == 0));
        break;
      case 1:
        FJ_NATIVE(nativeDescribe)(env, NULL, h);
        CHECK(settle() == (h == 0));
        break;
      case 2: {
        int32_t t = fz_i32(&in);
        if (t >= 1 && t <= 256) t = 1 + t % 2; /* valid counts kept small: runs stay fast */
        FJ_NATIVE(nativeSetThreads)(env, NULL, h, t);
        CHECK(settle() == (h == 0 || t < 1 || t > 256));
        break;
      }
      case 3: {
        fz_buf a, b;
        size_t na = (size_t)iw * ih * 4, nb = (size_t)ow * oh * 4;
        jobject ja = make_buf(&in, &a, na), jb = make_buf(&in, &b, nb);
        FJ_NATIVE(nativeUpscale)(env, NULL, h, ja, jb);
        CHECK(settle() == !(h && usable(&a, na) && usable(&b, nb)));
        free(a.b.addr), free(b.b.addr);
        break;
      }
      case 4: {
        int32_t w = fz_size(&in), hh = fz_size(&in), scale = fz_size(&in);
        int valid = w >= 1 && hh >= 1 && scale >= 1 && (int64_t)w * scale <= 65536 && (int64_t)hh * scale <= 65536;
        size_t ni = valid ? (size_t)w * hh * 4 : 64, no = valid ? (size_t)w * scale * hh * scale * 4 : 64;
        fz_buf a, b;
        jobject ja = make_buf(&in, &a, ni > MAX_CAP ? MAX_CAP : ni), jb = make_buf(&in, &b, no > MAX_CAP ? MAX_CAP : no);
        FJ_NATIVE(nativeBicubic)(env, NULL, ja, w, hh, scale, jb);
        CHECK(settle() == !(valid && usable(&a, ni) && usable(&b, no)));
        free(a.b.addr), free(b.b.addr);
        break;
      }
      case 5: {
        uint32_t add = code & 0x40 ? 11 : 0; /* often a size the SSIM window fits; unsigned: wraps, no UB */
        int32_t w = (int32_t)((uint32_t)fz_size(&in) + add), hh = (int32_t)((uint32_t)fz_size(&in) + add);
        int32_t crop = fz_size(&in);
        int valid = w >= 11 && hh >= 11 && w <= 65536 && hh <= 65536 && crop >= 0 && crop <= (w - 11) / 2 &&
                    crop <= (hh - 11) / 2;
        size_t n = valid ? (size_t)w * hh * 4 : 64;
        fz_buf a, b;
        jobject ja = make_buf(&in, &a, n > MAX_CAP ? MAX_CAP : n), jb = make_buf(&in, &b, n > MAX_CAP ? MAX_CAP : n);
        jdoubleArray r = FJ_NATIVE(nativeQuality)(env, NULL, ja, jb, w, hh, crop);
        int threw = settle();
        CHECK(threw == !(valid && usable(&a, n) && usable(&b, n)));
        if (!threw) CHECK(r && fj.doubles[1] <= 1.0 + 1e-9);
        free(a.b.addr), free(b.b.addr);
        break;
      }
      case 6: { /* open a library that is not there (any name under a missing folder), any thread count */
        char path[64] = "/nonexistent/";
        size_t k = strlen(path);
        for (uint8_t len = fz_u8(&in) % 40; len-- && k + 1 < sizeof path;) {
          char c = (char)(fz_u8(&in) | 1); /* no NUL, and no '/' or '.': the name stays inside /nonexistent/ */
          path[k++] = c == '/' || c == '.' ? '_' : c;
        }
        path[k] = 0;
        fj_string s = {path};
        int32_t t = fz_i32(&in);
        CHECK(FJ_NATIVE(nativeOpen)(env, NULL, code & 0x40 ? NULL : (jstring)&s, t) == 0);
        CHECK(settle());
        break;
      }
      default: /* closing handle 0 is a no-op (NativeEngine.close() twice) */
        FJ_NATIVE(nativeClose)(env, NULL, 0);
        CHECK(!settle());
        break;
    }
  }
  return 0;
}
