/* srmodel_cpu.h: does this CPU have the instructions the library was compiled to use? (included by srmodel_rt.c)
 *
 * Why at create and not never: code built for +fullfp16 (or +dotprod, AVX-512...) dies of SIGILL on a CPU
 * without it, which an app cannot catch. srmodel_create asks the CPU first (aarch64: getauxval(AT_HWCAP), the
 * kernel's own record of the features; x86: cpuid, plus xgetbv for the OS saving the wider registers) and
 * refuses with SRMODEL_ERR_CPU and a message naming what is missing. Bits = the index in
 * compiler/targets.py CPU_FEATURES.
 */
#ifndef SRMODEL_CPU_H_
#define SRMODEL_CPU_H_

#include <stdint.h>

#define SRM_FEAT_FP16 (1u << 0)       /* aarch64 FPHP + ASIMDHP: fp16 arithmetic, scalar and vector */
#define SRM_FEAT_DOTPROD (1u << 1)    /* aarch64 ASIMDDP: sdot/udot */
#define SRM_FEAT_AVX2 (1u << 2)       /* x86 */
#define SRM_FEAT_FMA (1u << 3)        /* x86 */
#define SRM_FEAT_AVX512F (1u << 4)    /* x86 */
#define SRM_FEAT_AVX512VNNI (1u << 5) /* x86: vpdpbusd */
#define SRM_NUM_FEATS 6

static const char* const srm_feat_names[SRM_NUM_FEATS] = {
    "fp16 arithmetic (aarch64 HWCAP_FPHP/ASIMDHP)", "dot product (aarch64 HWCAP_ASIMDDP)", "AVX2", "FMA",
    "AVX-512F", "AVX-512 VNNI"};

#if defined(__aarch64__)
extern unsigned long getauxval(unsigned long);
#define SRM_AT_HWCAP 16
static uint32_t srm_cpu_features(void) {
  unsigned long hw = getauxval(SRM_AT_HWCAP);
  uint32_t f = 0;
  if ((hw & (1ul << 9)) && (hw & (1ul << 10))) f |= SRM_FEAT_FP16; /* HWCAP_FPHP, HWCAP_ASIMDHP */
  if (hw & (1ul << 20)) f |= SRM_FEAT_DOTPROD;                     /* HWCAP_ASIMDDP */
  return f;
}
#elif defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static uint32_t srm_cpu_features(void) {
  unsigned a, b, c, d;
  uint32_t f = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  uint64_t xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = ((uint64_t)hi << 32) | lo;
  }
  int ymm = avx && (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xe0) == 0xe0;
  if (ymm && fma) f |= SRM_FEAT_FMA;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    if (ymm && ((b >> 5) & 1)) f |= SRM_FEAT_AVX2;
    if (zmm && ((b >> 16) & 1)) f |= SRM_FEAT_AVX512F;
    if (zmm && ((c >> 11) & 1)) f |= SRM_FEAT_AVX512VNNI;
  }
  return f;
}
#else
static uint32_t srm_cpu_features(void) { return 0; }
#endif

/* The required features this CPU lacks (0: none), their names joined into `names`. */
static uint32_t srm_cpu_missing(uint32_t required, char* names, size_t len) {
  uint32_t missing = required & ~srm_cpu_features();
  size_t at = 0;
  if (len) names[0] = 0;
  for (int i = 0; i < SRM_NUM_FEATS; ++i) {
    if (!(missing & (1u << i))) continue;
    for (const char* s = at ? ", " : ""; *s && at + 1 < len; ++s) names[at++] = *s;
    for (const char* s = srm_feat_names[i]; *s && at + 1 < len; ++s) names[at++] = *s;
    if (len) names[at] = 0;
  }
  return missing;
}

#endif /* SRMODEL_CPU_H_ */
