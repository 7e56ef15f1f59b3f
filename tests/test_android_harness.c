/* Test harness for the demo app's C layer (android_app/app/src/main/cpp): built for
 * aarch64-linux-android with clang like the app, run under qemu-aarch64 by tests/test_android_native.py.
 *
 *   harness MODEL.so LR.rgba HR.rgba STRIDE_PAD THREADS OUTDIR
 *
 * LR.rgba holds the model's input frame (RGBA rows padded by STRIDE_PAD bytes), HR.rgba the ground
 * truth at the output size (tight rows). Writes OUTDIR/sr.rgb and OUTDIR/bicubic.rgb (packed RGB) and
 * prints one line of key=value numbers: sizes, PSNR/SSIM of both against HR (crop = scale), model ms.
 */
#include <stddef.h>
#include <stdint.h>

#include "sr_core.h"
#include "sr_engine.h"

typedef struct hfile hfile;
extern int printf(const char*, ...);
extern int snprintf(char*, size_t, const char*, ...);
extern hfile* fopen(const char*, const char*);
extern size_t fread(void*, size_t, size_t, hfile*);
extern size_t fwrite(const void*, size_t, size_t, hfile*);
extern int fclose(hfile*);
extern long strtol(const char*, char**, int);
extern void* malloc(size_t);

static int load(const char* path, void* buf, size_t n) {
  hfile* f = fopen(path, "rb");
  size_t got = f ? fread(buf, 1, n, f) : 0;
  if (f) fclose(f);
  return got == n;
}

static int save(const char* dir, const char* name, const void* buf, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  hfile* f = fopen(path, "wb");
  size_t put = f ? fwrite(buf, 1, n, f) : 0;
  if (f) fclose(f);
  return put == n;
}

int main(int argc, char** argv) {
  if (argc != 7) {
    printf("usage: harness MODEL.so LR.rgba HR.rgba STRIDE_PAD THREADS OUTDIR\n");
    return 2;
  }
  char err[512];
  sre_engine* e = sre_open(argv[1], (int)strtol(argv[5], 0, 10), err, sizeof err);
  if (!e) {
    printf("error: %s\n", err);
    return 1;
  }
  int iw, ih, ow, oh;
  sre_sizes(e, &iw, &ih, &ow, &oh);
  int scale = ow / iw;
  size_t stride = (size_t)iw * 4 + (size_t)strtol(argv[4], 0, 10);
  uint8_t* lr = malloc(stride * ih);
  uint8_t* hr = malloc((size_t)ow * oh * 4);
  uint8_t* sr = malloc((size_t)ow * oh * 4);
  uint8_t* lr_rgb = malloc((size_t)iw * ih * 3);
  uint8_t* hr_rgb = malloc((size_t)ow * oh * 3);
  uint8_t* sr_rgb = malloc((size_t)ow * oh * 3);
  uint8_t* bic = malloc((size_t)ow * oh * 3);
  if (!load(argv[2], lr, stride * ih) || !load(argv[3], hr, (size_t)ow * oh * 4)) {
    printf("error: input files do not match the model's %dx%d -> %dx%d frames\n", iw, ih, ow, oh);
    return 1;
  }
  double ms = 0, p_sr, s_sr, p_bic, s_bic;
  if (sre_run_rgba(e, lr, stride, sr, (size_t)ow * 4, &ms)) {
    printf("error: %s\n", sre_error(e));
    return 1;
  }
  src_rgba_to_rgb(sr, (size_t)ow * 4, ow, oh, sr_rgb);
  src_rgba_to_rgb(hr, (size_t)ow * 4, ow, oh, hr_rgb);
  src_rgba_to_rgb(lr, stride, iw, ih, lr_rgb);
  int alpha_ok = 1;
  for (size_t i = 0; i < (size_t)ow * oh; ++i) alpha_ok &= sr[i * 4 + 3] == 255;
  if (src_bicubic_up(lr_rgb, iw, ih, scale, bic) || src_quality_y(sr_rgb, hr_rgb, ow, oh, scale, &p_sr, &s_sr) ||
      src_quality_y(bic, hr_rgb, ow, oh, scale, &p_bic, &s_bic)) {
    printf("error: bicubic or quality failed\n");
    return 1;
  }
  size_t n_out = (size_t)ow * oh * 3;
  if (!save(argv[6], "sr.rgb", sr_rgb, n_out) || !save(argv[6], "bicubic.rgb", bic, n_out)) {
    printf("error: cannot write to %s\n", argv[6]);
    return 1;
  }
  printf("in=%dx%d out=%dx%d scale=%d threads=%d alpha_ok=%d psnr_sr=%.12f ssim_sr=%.12f psnr_bic=%.12f "
         "ssim_bic=%.12f model_ms=%.3f\n",
         iw, ih, ow, oh, scale, sre_get_threads(e), alpha_ok, p_sr, s_sr, p_bic, s_bic, ms);
  sre_close(e);
  return 0;
}
