/* sr_core.c: see sr_core.h. Freestanding: the few libc/libm functions are declared here. */
#include "sr_core.h"

extern void* malloc(size_t);
extern void* calloc(size_t, size_t);
extern void free(void*);
extern double exp(double);
extern double log10(double);
extern double floor(double);

void src_rgba_to_rgb(const uint8_t* rgba, size_t stride, int w, int h, uint8_t* rgb) {
  for (int y = 0; y < h; ++y) {
    const uint8_t* s = rgba + (size_t)y * stride;
    uint8_t* d = rgb + (size_t)y * (size_t)w * 3;
    for (int x = 0; x < w; ++x, s += 4, d += 3) d[0] = s[0], d[1] = s[1], d[2] = s[2];
  }
}

void src_rgb_to_rgba(const uint8_t* rgb, int w, int h, uint8_t* rgba, size_t stride) {
  for (int y = 0; y < h; ++y) {
    const uint8_t* s = rgb + (size_t)y * (size_t)w * 3;
    uint8_t* d = rgba + (size_t)y * stride;
    for (int x = 0; x < w; ++x, s += 3, d += 4) d[0] = s[0], d[1] = s[1], d[2] = s[2], d[3] = 255;
  }
}

/* Round half to even (numpy's np.round) and clip to 0..255. */
static uint8_t to_u8(double v) {
  double r = floor(v), d = v - r;
  if (d > 0.5 || (d == 0.5 && ((long long)r & 1))) r += 1.0;
  return r < 0 ? 0 : r > 255 ? 255 : (uint8_t)r;
}

/* Keys cubic kernel, a = -0.5 (MATLAB's `cubic`). */
static double cubic(double x) {
  double a = x < 0 ? -x : x, a2 = a * a, a3 = a2 * a;
  if (a <= 1) return 1.5 * a3 - 2.5 * a2 + 1;
  if (a <= 2) return -0.5 * a3 + 2.5 * a2 - 4 * a + 2;
  return 0;
}

#define TAPS 6 /* ceil(kernel width 4) + 2, as MATLAB when enlarging */

/* Per output index: TAPS input indices (mirrored at the borders) and normalised weights. */
static void axis_table(int n_in, int scale, int* idx, double* wt) {
  int n_out = n_in * scale;
  for (int o = 0; o < n_out; ++o) {
    double u = (o + 1) / (double)scale + 0.5 * (1 - 1.0 / scale);
    double left = floor(u - 2.0), sum = 0;
    for (int t = 0; t < TAPS; ++t) {
      double index = left + t;
      wt[o * TAPS + t] = cubic(u - index);
      sum += wt[o * TAPS + t];
      long i = ((long)index - 1) % (2L * n_in);
      if (i < 0) i += 2L * n_in;
      idx[o * TAPS + t] = (int)(i < n_in ? i : 2L * n_in - 1 - i);
    }
    for (int t = 0; t < TAPS; ++t) wt[o * TAPS + t] /= sum;
  }
}

int src_bicubic_up(const uint8_t* rgb, int w, int h, int scale, uint8_t* out) {
  /* sizes in size_t before any int arithmetic: w * scale must not wrap */
  if (!rgb || !out || w < 1 || h < 1 || scale < 1 || (size_t)w * (size_t)scale > SRC_MAX_SIDE ||
      (size_t)h * (size_t)scale > SRC_MAX_SIDE)
    return SRC_ERR_ARG;
  int ow = w * scale, oh = h * scale;
  size_t n_rows;
  if (!src_size3((size_t)h, (size_t)ow, 3 * sizeof(double), &n_rows)) return SRC_ERR_NOMEM;
  int *ix = malloc(sizeof(int) * TAPS * (size_t)ow), *iy = malloc(sizeof(int) * TAPS * (size_t)oh);
  double *wx = malloc(sizeof(double) * TAPS * (size_t)ow), *wy = malloc(sizeof(double) * TAPS * (size_t)oh);
  double* rows = malloc(n_rows); /* columns resized first */
  int rc = SRC_OK;
  if (!ix || !iy || !wx || !wy || !rows) {
    rc = SRC_ERR_NOMEM;
    goto done;
  }
  axis_table(w, scale, ix, wx);
  axis_table(h, scale, iy, wy);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < ow; ++x)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int t = 0; t < TAPS; ++t) s += wx[x * TAPS + t] * rgb[((size_t)y * w + ix[x * TAPS + t]) * 3 + c];
        rows[((size_t)y * ow + x) * 3 + c] = s;
      }
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int t = 0; t < TAPS; ++t) s += wy[y * TAPS + t] * rows[((size_t)iy[y * TAPS + t] * ow + x) * 3 + c];
        out[((size_t)y * ow + x) * 3 + c] = to_u8(s);
      }
done:
  free(ix), free(iy), free(wx), free(wy), free(rows);
  return rc;
}

/* BT.601 luma in [16, 235] of one RGB pixel, in double as srprune.metrics.rgb_to_y. */
static double luma(const uint8_t* p) {
  return (p[0] * 65.481 + p[1] * 128.553 + p[2] * 24.966) / 255.0 + 16.0;
}

int src_quality_y(const uint8_t* a, const uint8_t* b, int w, int h, int crop, double* psnr, double* ssim) {
  /* crop <= (side - 11) / 2 written without 2 * crop, which wraps for a huge crop */
  if (!a || !b || !psnr || !ssim || w < 11 || h < 11 || w > SRC_MAX_SIDE || h > SRC_MAX_SIDE || crop < 0 ||
      crop > (w - 11) / 2 || crop > (h - 11) / 2)
    return SRC_ERR_ARG;
  int cw = w - 2 * crop, ch = h - 2 * crop, vw = cw - 10, vh = ch - 10;
  double* ya = malloc(sizeof(double) * (size_t)cw * ch);
  double* yb = malloc(sizeof(double) * (size_t)cw * ch);
  double* hz = malloc(sizeof(double) * 5 * (size_t)vw * ch); /* horizontal pass of a, b, aa, bb, ab */
  if (!ya || !yb || !hz) {
    free(ya), free(yb), free(hz);
    return SRC_ERR_NOMEM;
  }
  double mse = 0;
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < cw; ++x) {
      size_t src = ((size_t)(y + crop) * w + x + crop) * 3, i = (size_t)y * cw + x;
      ya[i] = luma(a + src), yb[i] = luma(b + src);
      mse += (ya[i] - yb[i]) * (ya[i] - yb[i]);
    }
  mse /= (double)cw * ch;
  *psnr = mse == 0 ? 1e300 : 10.0 * log10(255.0 * 255.0 / mse);
  /* The 11x11 window is separable: g g^T with g the normalised Gaussian of sigma 1.5. */
  double g[11], gs = 0;
  for (int i = 0; i < 11; ++i) gs += g[i] = exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
  for (int i = 0; i < 11; ++i) g[i] /= gs;
  size_t plane = (size_t)vw * ch;
  for (int y = 0; y < ch; ++y)
    for (int x = 0; x < vw; ++x) {
      double s[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < 11; ++k) {
        double p = ya[(size_t)y * cw + x + k], q = yb[(size_t)y * cw + x + k];
        s[0] += g[k] * p, s[1] += g[k] * q, s[2] += g[k] * p * p, s[3] += g[k] * q * q, s[4] += g[k] * p * q;
      }
      for (int j = 0; j < 5; ++j) hz[j * plane + (size_t)y * vw + x] = s[j];
    }
  const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
  double total = 0;
  for (int y = 0; y < vh; ++y)
    for (int x = 0; x < vw; ++x) {
      double s[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < 11; ++k)
        for (int j = 0; j < 5; ++j) s[j] += g[k] * hz[j * plane + (size_t)(y + k) * vw + x];
      double va = s[2] - s[0] * s[0], vb = s[3] - s[1] * s[1], cov = s[4] - s[0] * s[1];
      total += ((2 * s[0] * s[1] + c1) * (2 * cov + c2)) / ((s[0] * s[0] + s[1] * s[1] + c1) * (va + vb + c2));
    }
  *ssim = total / ((double)vw * vh);
  free(ya), free(yb), free(hz);
  return SRC_OK;
}
