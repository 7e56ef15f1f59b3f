/* sr_core.h: the pixel work of the demo app that is not the model: RGBA <-> RGB, the bicubic
 * reference upscale shown beside the model's output, and PSNR/SSIM of the bundled test image.
 *
 * Why in C and free of JNI: the same code runs on the phone (called from sr_jni.c) and in a test
 * harness under qemu-aarch64, where it is compared with srprune.imresize and srprune.metrics.
 * No libc headers (like the model runtime), so it builds with clang for Android without the NDK.
 * Conventions are srprune's: MATLAB bicubic (Keys a = -0.5, symmetric borders), results rounded
 * half-to-even; PSNR/SSIM on BT.601 Y in double, crop_border pixels cut from every side, SSIM with
 * an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, valid positions only.
 */
#ifndef SR_CORE_H_
#define SR_CORE_H_

#include <stddef.h>
#include <stdint.h>

#define SRC_OK 0
#define SRC_ERR_ARG 1   /* bad sizes or NULL pointers */
#define SRC_ERR_NOMEM 3 /* same value as SRMODEL_ERR_NOMEM */

/* The largest width or height (input or output, pixels) the functions below accept: every index then fits an
 * int and every buffer size a size_t. Bigger frames are refused (SRC_ERR_ARG), never wrapped around. */
#define SRC_MAX_SIDE 65536

/* *out = a * b * c; 0 (and *out unspecified) when the product does not fit a size_t. */
static inline int src_size3(size_t a, size_t b, size_t c, size_t* out) {
  return !__builtin_mul_overflow(a, b, out) && !__builtin_mul_overflow(*out, c, out);
}

/* RGBA8888 rows (Android's ARGB_8888 memory order R,G,B,A; `stride` bytes per row) -> packed RGB. */
void src_rgba_to_rgb(const uint8_t* rgba, size_t stride, int w, int h, uint8_t* rgb);
/* Packed RGB -> RGBA8888 rows with alpha 255. */
void src_rgb_to_rgba(const uint8_t* rgb, int w, int h, uint8_t* rgba, size_t stride);
/* MATLAB-compatible bicubic upscale by an integer factor: (h x w) RGB -> (h*scale x w*scale) RGB.
 * SRC_ERR_ARG for NULL buffers, sizes < 1, or an output side over SRC_MAX_SIDE. */
int src_bicubic_up(const uint8_t* rgb, int w, int h, int scale, uint8_t* out);
/* PSNR (dB; 1e300 for identical images) and SSIM of two packed RGB images on the BT.601 Y channel.
 * SRC_ERR_ARG for NULL pointers, a side over SRC_MAX_SIDE, crop < 0, or less than 11x11 left after cropping. */
int src_quality_y(const uint8_t* a, const uint8_t* b, int w, int h, int crop, double* psnr, double* ssim);

#endif /* SR_CORE_H_ */
