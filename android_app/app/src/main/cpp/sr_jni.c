/* sr_jni.c: the Java methods of com.srprune.demo.NativeEngine over sr_engine (model) and sr_core (pixels).
 *
 * Frames cross as direct ByteBuffers holding RGBA8888 rows (Bitmap.copyPixelsToBuffer /
 * copyPixelsFromBuffer), so no Android NDK header (android/bitmap.h) is needed and the layer builds
 * here with clang against the JDK's jni.h. Failures become Java exceptions that the UI shows as
 * messages, never a crash: IllegalArgumentException for a bad argument (sizes, buffers, thread count),
 * IllegalStateException for a closed engine (handle 0) or a model that fails, OutOfMemoryError for ENOMEM.
 * Sizes from Java are checked in size_t with overflow checks before any arithmetic in int.
 */
#include <jni.h>

#include "sr_core.h"
#include "sr_engine.h"
#include "srmodel.h"

extern void* malloc(size_t);
extern void free(void*);
extern int snprintf(char*, size_t, const char*, ...);

#define IAE "java/lang/IllegalArgumentException"
#define ISE "java/lang/IllegalStateException"
#define OOM "java/lang/OutOfMemoryError"
#define MAX_THREADS 256 /* as srmodel_set_threads */

static void throw_class(JNIEnv* env, const char* cls, const char* msg) {
  jclass c = (*env)->FindClass(env, cls);
  if (c) (*env)->ThrowNew(env, c, msg);
}

/* A library / engine code as an exception: a bad argument, out of memory, or anything else (a model failure). */
static void throw_error(JNIEnv* env, int code, const char* msg) {
  throw_class(env, code == SRMODEL_ERR_NOMEM ? OOM : code == SRMODEL_ERR_ARG ? IAE : ISE, msg);
}

/* The engine of a handle, or NULL with IllegalStateException pending: 0 is what NativeEngine.close() leaves. */
static sre_engine* engine(JNIEnv* env, jlong h, const char* what) {
  if (h == 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: the NativeEngine is closed", what);
    throw_class(env, ISE, msg);
  }
  return (sre_engine*)(intptr_t)h;
}

/* The address of a direct buffer holding at least w * h * bpp bytes, else NULL with IllegalArgumentException
 * pending (the product is computed in size_t and an overflow is refused, never wrapped). */
static uint8_t* buffer(JNIEnv* env, jobject buf, size_t w, size_t h, size_t bpp, const char* what) {
  size_t need;
  uint8_t* p = buf ? (uint8_t*)(*env)->GetDirectBufferAddress(env, buf) : 0;
  jlong cap = p ? (*env)->GetDirectBufferCapacity(env, buf) : -1;
  if (!p || cap < 0 || !src_size3(w, h, bpp, &need) || (unsigned long long)cap < (unsigned long long)need) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s is %s (needs %zux%zux%zu bytes)", what,
             !buf ? "null" : !p ? "not a direct buffer" : "too small", w, h, bpp);
    throw_class(env, IAE, msg);
    return 0;
  }
  return p;
}

JNIEXPORT jlong JNICALL Java_com_srprune_demo_NativeEngine_nativeOpen(JNIEnv* env, jclass cls, jstring path,
                                                                      jint threads) {
  (void)cls;
  char err[512];
  if (!path || threads < 0 || threads > MAX_THREADS) { /* 0: the model's default */
    snprintf(err, sizeof err, !path ? "open: the library path is null" : "open: threads must be 0..%d, got %d",
             MAX_THREADS, (int)threads);
    throw_class(env, IAE, err);
    return 0;
  }
  const char* p = (*env)->GetStringUTFChars(env, path, 0);
  if (!p) return 0; /* OutOfMemoryError pending */
  sre_engine* e = sre_open(p, threads, err, sizeof err);
  (*env)->ReleaseStringUTFChars(env, path, p);
  if (!e) throw_class(env, ISE, err);
  return (jlong)(intptr_t)e;
}

JNIEXPORT void JNICALL Java_com_srprune_demo_NativeEngine_nativeClose(JNIEnv* env, jclass cls, jlong h) {
  (void)env, (void)cls;
  sre_close((sre_engine*)(intptr_t)h);
}

JNIEXPORT jintArray JNICALL Java_com_srprune_demo_NativeEngine_nativeSizes(JNIEnv* env, jclass cls, jlong h) {
  (void)cls;
  jint v[4];
  sre_engine* e = engine(env, h, "sizes");
  if (!e) return 0;
  sre_sizes(e, &v[0], &v[1], &v[2], &v[3]);
  jintArray out = (*env)->NewIntArray(env, 4);
  if (out) (*env)->SetIntArrayRegion(env, out, 0, 4, v);
  return out;
}

JNIEXPORT jstring JNICALL Java_com_srprune_demo_NativeEngine_nativeDescribe(JNIEnv* env, jclass cls, jlong h) {
  (void)cls;
  sre_engine* e = engine(env, h, "describe");
  return e ? (*env)->NewStringUTF(env, sre_describe(e)) : 0;
}

JNIEXPORT void JNICALL Java_com_srprune_demo_NativeEngine_nativeSetThreads(JNIEnv* env, jclass cls, jlong h,
                                                                           jint threads) {
  (void)cls;
  sre_engine* e = engine(env, h, "setThreads");
  if (!e) return;
  int rc = sre_set_threads(e, threads);
  if (rc) throw_error(env, rc, sre_error(e));
}

JNIEXPORT jdouble JNICALL Java_com_srprune_demo_NativeEngine_nativeUpscale(JNIEnv* env, jclass cls, jlong h,
                                                                          jobject in, jobject out) {
  (void)cls;
  sre_engine* e = engine(env, h, "upscale");
  if (!e) return -1;
  int iw, ih, ow, oh;
  sre_sizes(e, &iw, &ih, &ow, &oh);
  uint8_t* pi = buffer(env, in, (size_t)iw, (size_t)ih, 4, "upscale: the input frame buffer");
  if (!pi) return -1;
  uint8_t* po = buffer(env, out, (size_t)ow, (size_t)oh, 4, "upscale: the output frame buffer");
  if (!po) return -1;
  double ms = 0;
  int rc = sre_run_rgba(e, pi, (size_t)iw * 4, po, (size_t)ow * 4, &ms);
  if (rc) throw_error(env, rc, sre_error(e));
  return ms;
}

JNIEXPORT void JNICALL Java_com_srprune_demo_NativeEngine_nativeBicubic(JNIEnv* env, jclass cls, jobject in, jint w,
                                                                        jint h, jint scale, jobject out) {
  (void)cls;
  char msg[160];
  /* products in size_t (< 2^62 from two positive jints): w * scale cannot wrap before the check */
  if (w < 1 || h < 1 || scale < 1 || (size_t)w * (size_t)scale > SRC_MAX_SIDE ||
      (size_t)h * (size_t)scale > SRC_MAX_SIDE) {
    snprintf(msg, sizeof msg, "bicubic: sizes and scale must be positive with at most %d output pixels a side, got "
             "%dx%d x%d", SRC_MAX_SIDE, (int)w, (int)h, (int)scale);
    throw_class(env, IAE, msg);
    return;
  }
  size_t ow = (size_t)w * (size_t)scale, oh = (size_t)h * (size_t)scale;
  uint8_t* pi = buffer(env, in, (size_t)w, (size_t)h, 4, "bicubic: the input buffer");
  if (!pi) return;
  uint8_t* po = buffer(env, out, ow, oh, 4, "bicubic: the output buffer");
  if (!po) return;
  uint8_t* rgb = malloc((size_t)w * h * 3);
  uint8_t* up = malloc(ow * oh * 3);
  int rc = rgb && up ? SRC_OK : SRC_ERR_NOMEM;
  if (!rc) {
    src_rgba_to_rgb(pi, (size_t)w * 4, w, h, rgb);
    rc = src_bicubic_up(rgb, w, h, scale, up);
    if (!rc) src_rgb_to_rgba(up, (int)ow, (int)oh, po, ow * 4);
  }
  free(rgb), free(up);
  if (rc) throw_error(env, rc, rc == SRC_ERR_NOMEM ? "out of memory for the bicubic frame" : "bicubic failed");
}

JNIEXPORT jdoubleArray JNICALL Java_com_srprune_demo_NativeEngine_nativeQuality(JNIEnv* env, jclass cls,
                                                                                jobject sr, jobject hr, jint w,
                                                                                jint h, jint crop) {
  (void)cls;
  char msg[200];
  /* crop <= (side - 11) / 2 checked without 2 * crop (wraps in int for a huge crop) */
  if (w < 11 || h < 11 || w > SRC_MAX_SIDE || h > SRC_MAX_SIDE || crop < 0 || crop > (w - 11) / 2 ||
      crop > (h - 11) / 2) {
    snprintf(msg, sizeof msg, "quality: %dx%d with crop %d: sides must be 11..%d and crop 0..(side - 11) / 2 "
             "(the 11x11 SSIM window must fit after cropping)", (int)w, (int)h, (int)crop, SRC_MAX_SIDE);
    throw_class(env, IAE, msg);
    return 0;
  }
  size_t n = (size_t)w * (size_t)h;
  uint8_t* pa = buffer(env, sr, (size_t)w, (size_t)h, 4, "quality: the result buffer");
  if (!pa) return 0;
  uint8_t* pb = buffer(env, hr, (size_t)w, (size_t)h, 4, "quality: the ground truth buffer");
  if (!pb) return 0;
  uint8_t *a = malloc(n * 3), *b = malloc(n * 3);
  double v[2] = {0, 0};
  int rc = a && b ? SRC_OK : SRC_ERR_NOMEM;
  if (!rc) {
    src_rgba_to_rgb(pa, (size_t)w * 4, w, h, a);
    src_rgba_to_rgb(pb, (size_t)w * 4, w, h, b);
    rc = src_quality_y(a, b, w, h, crop, &v[0], &v[1]);
  }
  free(a), free(b);
  if (rc) {
    throw_error(env, rc,
                rc == SRC_ERR_NOMEM ? "out of memory for PSNR/SSIM"
                                    : "quality: the image is smaller than the 11x11 SSIM window after cropping");
    return 0;
  }
  jdoubleArray out = (*env)->NewDoubleArray(env, 2);
  if (out) (*env)->SetDoubleArrayRegion(env, out, 0, 2, v);
  return out;
}
