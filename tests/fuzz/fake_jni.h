/* fake_jni.h: a JNIEnv for the host, enough for android_app/app/src/main/cpp/sr_jni.c.
 *
 * The natives are called as ART would call them, with the JDK's jni.h types: a jobject buffer is an
 * fj_buffer (address, capacity, direct or not), a jstring an fj_string. ThrowNew records the class and the
 * message; any other JNI call made while an exception is pending, or a second throw, counts as a violation
 * (real JNI forbids both). Functions sr_jni.c does not use stay NULL: calling one crashes the harness.
 * Header-only (static) so the misuse program and the fuzz harness each get their own copy.
 */
#ifndef FAKE_JNI_H_
#define FAKE_JNI_H_

#include <jni.h>
#include <stdio.h>
#include <string.h>

typedef struct { void* addr; jlong cap; int direct; } fj_buffer;
typedef struct { const char* utf; } fj_string;

static struct {
  int pending, violations;
  char cls[128], msg[512];
  char found[128];         /* FindClass's last name: the jclass handed out points here */
  jint ints[4];            /* the last int[] / double[] / String created */
  jdouble doubles[2];
  char string[512];
  int arrays;              /* arrays handed out (a distinct non-NULL jarray each time) */
} fj;

static void fj_check(const char* fn) {
  if (fj.pending) {
    fprintf(stderr, "fake JNI: %s called with %s pending\n", fn, fj.cls);
    fj.violations++;
  }
}

static jclass JNICALL fj_FindClass(JNIEnv* env, const char* name) {
  (void)env;
  fj_check("FindClass");
  snprintf(fj.found, sizeof fj.found, "%s", name);
  return (jclass)fj.found;
}

static jint JNICALL fj_ThrowNew(JNIEnv* env, jclass c, const char* msg) {
  (void)env;
  fj_check("ThrowNew");
  fj.pending = 1;
  snprintf(fj.cls, sizeof fj.cls, "%s", (const char*)c);
  snprintf(fj.msg, sizeof fj.msg, "%s", msg ? msg : "(null)");
  return 0;
}

static void* JNICALL fj_GetDirectBufferAddress(JNIEnv* env, jobject buf) {
  (void)env;
  fj_check("GetDirectBufferAddress");
  const fj_buffer* b = (const fj_buffer*)buf;
  return b->direct ? b->addr : NULL;
}

static jlong JNICALL fj_GetDirectBufferCapacity(JNIEnv* env, jobject buf) {
  (void)env;
  fj_check("GetDirectBufferCapacity");
  const fj_buffer* b = (const fj_buffer*)buf;
  return b->direct ? b->cap : -1;
}

static const char* JNICALL fj_GetStringUTFChars(JNIEnv* env, jstring s, jboolean* copy) {
  (void)env;
  fj_check("GetStringUTFChars");
  if (copy) *copy = JNI_FALSE;
  return ((const fj_string*)s)->utf;
}

static void JNICALL fj_ReleaseStringUTFChars(JNIEnv* env, jstring s, const char* chars) {
  (void)env, (void)s, (void)chars; /* allowed with an exception pending */
}

static jintArray JNICALL fj_NewIntArray(JNIEnv* env, jsize n) {
  (void)env;
  fj_check("NewIntArray");
  fj.arrays++;
  return n == 4 ? (jintArray)fj.ints : NULL;
}

static void JNICALL fj_SetIntArrayRegion(JNIEnv* env, jintArray a, jsize start, jsize n, const jint* v) {
  (void)env;
  fj_check("SetIntArrayRegion");
  if ((void*)a != (void*)fj.ints || start < 0 || n < 0 || start + n > 4) fj.violations++;
  else memcpy(fj.ints + start, v, sizeof(jint) * (size_t)n);
}

static jdoubleArray JNICALL fj_NewDoubleArray(JNIEnv* env, jsize n) {
  (void)env;
  fj_check("NewDoubleArray");
  fj.arrays++;
  return n == 2 ? (jdoubleArray)fj.doubles : NULL;
}

static void JNICALL fj_SetDoubleArrayRegion(JNIEnv* env, jdoubleArray a, jsize start, jsize n, const jdouble* v) {
  (void)env;
  fj_check("SetDoubleArrayRegion");
  if ((void*)a != (void*)fj.doubles || start < 0 || n < 0 || start + n > 2) fj.violations++;
  else memcpy(fj.doubles + start, v, sizeof(jdouble) * (size_t)n);
}

static jstring JNICALL fj_NewStringUTF(JNIEnv* env, const char* s) {
  (void)env;
  fj_check("NewStringUTF");
  if (!s) { fj.violations++; return NULL; }
  snprintf(fj.string, sizeof fj.string, "%s", s);
  return (jstring)fj.string;
}

static struct JNINativeInterface_ fj_functions;
static JNIEnv fj_env_value;

/* The fake env; call once. */
static JNIEnv* fj_env(void) {
  memset(&fj_functions, 0, sizeof fj_functions);
  fj_functions.FindClass = fj_FindClass;
  fj_functions.ThrowNew = fj_ThrowNew;
  fj_functions.GetDirectBufferAddress = fj_GetDirectBufferAddress;
  fj_functions.GetDirectBufferCapacity = fj_GetDirectBufferCapacity;
  fj_functions.GetStringUTFChars = fj_GetStringUTFChars;
  fj_functions.ReleaseStringUTFChars = fj_ReleaseStringUTFChars;
  fj_functions.NewIntArray = fj_NewIntArray;
  fj_functions.SetIntArrayRegion = fj_SetIntArrayRegion;
  fj_functions.NewDoubleArray = fj_NewDoubleArray;
  fj_functions.SetDoubleArrayRegion = fj_SetDoubleArrayRegion;
  fj_functions.NewStringUTF = fj_NewStringUTF;
  fj_env_value = &fj_functions;
  return &fj_env_value;
}

/* Forget a pending exception (Java code would have caught it). */
static void fj_clear(void) { fj.pending = 0, fj.cls[0] = 0, fj.msg[0] = 0; }

/* The natives of com.srprune.demo.NativeEngine (sr_jni.c). */
#define FJ_NATIVE(name) Java_com_srprune_demo_NativeEngine_##name
jlong FJ_NATIVE(nativeOpen)(JNIEnv*, jclass, jstring, jint);
void FJ_NATIVE(nativeClose)(JNIEnv*, jclass, jlong);
jintArray FJ_NATIVE(nativeSizes)(JNIEnv*, jclass, jlong);
jstring FJ_NATIVE(nativeDescribe)(JNIEnv*, jclass, jlong);
void FJ_NATIVE(nativeSetThreads)(JNIEnv*, jclass, jlong, jint);
jdouble FJ_NATIVE(nativeUpscale)(JNIEnv*, jclass, jlong, jobject, jobject);
void FJ_NATIVE(nativeBicubic)(JNIEnv*, jclass, jobject, jint, jint, jint, jobject);
jdoubleArray FJ_NATIVE(nativeQuality)(JNIEnv*, jclass, jobject, jobject, jint, jint, jint);

#endif /* FAKE_JNI_H_ */
