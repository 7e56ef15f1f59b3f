/* sr_jni.c: the Java methods of com.srprune.demo.NativeEngine over sr_engine (model) and sr_core (pixels).
 *
 * Frames cross as direct ByteBuffers holding RGBA8888 rows (Bitmap.copyPixelsToBuffer /
 * copyPixelsFromBuffer), so no Android NDK header (android/bitmap.h) is needed and the layer builds
 * here with clang against the JDK's jni.h. Failures become Java exceptions that the UI shows as
 * messages: OutOfMemoryError for ENOMEM, IllegalStateException otherwise; never a crash.
 */
#include <jni.h>

#include "sr_core.h"
#include "sr_engine.h"
#include "srmodel.h"

extern void* malloc(size_t);
extern void free(void*);

static void throw_error(JNIEnv* env, int code, const char* msg) {
  const char* cls = code == SRMODEL_ERR_NOMEM ? "java/lang/OutOfMemoryError" : "java/lang/IllegalStateException";
  jclass c = (*env)->FindClass(env, cls);
  if (c) (*env)->ThrowNew(env, c, msg);
}

/* The address of a direct buffer holding at least `need` bytes, else NULL with an exception pending. */
static uint8_t* buffer(JNIEnv* env, jobject buf, size_t need, const char* what) {
  uint8_t* p = buf ? (uint8_t*)(*env)->GetDirectBufferAddress(env, buf) : 0;
  if (!p || (*env)->GetDirectBufferCapacity(env, buf) < (jlong)need) {
    throw_error(env, SRMODEL_ERR_ARG, what);
    return 0;
  }
  return p;
}

JNIEXPORT jlong JNICALL Java_com_srprune_demo_NativeEngine_nativeOpen(JNIEnv* env, jclass cls, jstring path,
                                                                      jint threads) {
  (void)cls;
  char err[512];
  const char* p = (*env)->GetStringUTFChars(env, path, 0);
  if (!p) return 0;
  sre_engine* e = sre_open(p, threads, err, sizeof err);
  (*env)->ReleaseStringUTFChars(env, path, p);
  if (!e) throw_error(env, SRMODEL_ERR_ARG, err);
  return (jlong)(intptr_t)e;
}

JNIEXPORT void JNICALL Java_com_srprune_demo_NativeEngine_nativeClose(JNIEnv* env, jclass cls, jlong h) {
  (void)env, (void)cls;
  sre_close((sre_engine*)(intptr_t)h);
}

JNIEXPORT jintArray JNICALL Java_com_srprune_demo_NativeEngine_nativeSizes(JNIEnv* env, jclass cls, jlong h) {
  (void)cls;
  jint v[4];
  sre_sizes((sre_engine*)(intptr_t)h, &v[0], &v[1], &v[2], &v[3]);
  jintArray out = (*env)->NewIntArray(env, 4);
  if (out) (*env)->SetIntArrayRegion(env, out, 0, 4, v);
  return out;
}

JNIEXPORT jstring JNICALL Java_com_srprune_demo_NativeEngine_nativeDescribe(JNIEnv* env, jclass cls, jlong h) {
  (void)cls;
  return (*env)->NewStringUTF(env, sre_describe((sre_engine*)(intptr_t)h));
}

JNIEXPORT void JNICALL Java_com_srprune_demo_NativeEngine_nativeSetThreads(JNIEnv* env, jclass cls, jlong h,
                                                                           jint threads) {
  (void)cls;
  sre_engine* e = (sre_engine*)(intptr_t)h;
  int rc = sre_set_threads(e, threads);
  if (rc) throw_error(env, rc, sre_error(e));
}

JNIEXPORT jdouble JNICALL Java_com_srprune_demo_NativeEngine_nativeUpscale(JNIEnv* env, jclass cls, jlong h,
                                                                          jobject in, jobject out) {
  (void)cls;
  sre_engine* e = (sre_engine*)(intptr_t)h;
  int iw, ih, ow, oh;
  sre_sizes(e, &iw, &ih, &ow, &oh);
  uint8_t* pi = buffer(env, in, (size_t)iw * ih * 4, "input frame buffer is not a direct buffer of the model's size");
  if (!pi) return -1;
  uint8_t* po = buffer(env, out, (size_t)ow * oh * 4, "output frame buffer is not a direct buffer of the model's size");
  if (!po) return -1;
  double ms = 0;
  int rc = sre_run_rgba(e, pi, (size_t)iw * 4, po, (size_t)ow * 4, &ms);
  if (rc) throw_error(env, rc, sre_error(e));
  return ms;
}

JNIEXPORT void JNICALL Java_com_srprune_demo_NativeEngine_nativeBicubic(JNIEnv* env, jclass cls, jobject in, jint w,
                                                                        jint h, jint scale, jobject out) {
  (void)cls;
  if (w < 1 || h < 1 || scale < 1) {
    throw_error(env, SRMODEL_ERR_ARG, "bicubic: sizes and scale must be positive");
    return;
  }
  size_t ow = (size_t)w * scale, oh = (size_t)h * scale;
  uint8_t* pi = buffer(env, in, (size_t)w * h * 4, "bicubic: input is not a direct buffer of w*h*4 bytes");
  if (!pi) return;
  uint8_t* po = buffer(env, out, ow * oh * 4, "bicubic: output is not a direct buffer of the upscaled size");
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
  if (w < 1 || h < 1) {
    throw_error(env, SRMODEL_ERR_ARG, "quality: sizes must be positive");
    return 0;
  }
  size_t n = (size_t)w * h;
  uint8_t* pa = buffer(env, sr, n * 4, "quality: result is not a direct buffer of w*h*4 bytes");
  if (!pa) return 0;
  uint8_t* pb = buffer(env, hr, n * 4, "quality: ground truth is not a direct buffer of w*h*4 bytes");
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
