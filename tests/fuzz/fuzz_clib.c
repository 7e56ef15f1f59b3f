/* fuzz_clib: libFuzzer harness for the C library's entry points (srmodel.h), linked with a small compiled model
 * (kernels + generated driver + srmodel_rt.c built with AddressSanitizer/UBSan by scripts/fuzz.py).
 *
 * The bytes are a sequence of operations on three handle slots: create, destroy (also of a destroyed
 * handle: a double destroy), run / run_rgb8 (right or wrong lengths, NULL, unaligned or overlapping buffers),
 * set/get threads, shapes, last_error, describe. The harness knows which handles are live (a destroyed
 * handle's memory may come back from a later create: then it is that live model) and traps when a result
 * differs from the contract: a live handle with valid arguments must succeed, a destroyed one must return
 * SRMODEL_ERR_ARG, a wrong length SRMODEL_ERR_SIZE, and nothing may be written on a refused call.
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign under -std=c11 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "srmodel.h"

#define SLOTS 3
#define CHECK(c) \
  do {           \
    if (!(c)) __builtin_trap(); \
  } while (0)

static int64_t in_shape[4], out_shape[4];
static size_t nin, nout;
static float *xin, *yout;            /* 64-byte aligned, one element of slack after each for unaligned use */
static uint8_t *rgb_in, *rgb_out;

int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc, (void)argv;
  srmodel* m;
  if (srmodel_create(&m) || srmodel_input_shape(m, in_shape) || srmodel_output_shape(m, out_shape)) abort();
  srmodel_destroy(m);
  nin = (size_t)(in_shape[0] * in_shape[1] * in_shape[2] * in_shape[3]);
  nout = (size_t)(out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3]);
  if (posix_memalign((void**)&xin, 64, (nin + 16) * sizeof(float)) ||
      posix_memalign((void**)&yout, 64, (nout + 16) * sizeof(float)))
    abort();
  rgb_in = malloc(nin), rgb_out = malloc(nout);
  return 0;
}

/* Is h one of the live handles? (the slots may hold copies of one pointer) */
static int is_live(srmodel* const* slot, const int* live, srmodel* h) {
  for (int i = 0; i < SLOTS; ++i)
    if (live[i] && slot[i] == h) return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_in in = {data, size};
  srmodel* slot[SLOTS] = {0};
  int live[SLOTS] = {0};
  for (int op = 0; op < 24 && in.n; ++op) {
    uint8_t code = fz_u8(&in);
    int s = code % SLOTS;
    srmodel* h = slot[s];
    int alive = h && is_live(slot, live, h);
    switch ((code / SLOTS) % 9) {
      case 0: { /* create into the slot (a live model there is destroyed first: no leak) */
        if (alive) {
          srmodel_destroy(h);
          for (int i = 0; i < SLOTS; ++i)
            if (slot[i] == h) live[i] = 0;
        }
        srmodel* m = (srmodel*)1;
        CHECK(srmodel_create(&m) == SRMODEL_OK && m);
        slot[s] = m, live[s] = 1;
        for (int i = 0; i < SLOTS; ++i) /* a stale copy of this pointer is the new model now */
          if (slot[i] == m) live[i] = 1;
        break;
      }
      case 1: /* destroy: live, destroyed (double destroy) or NULL */
        srmodel_destroy(h);
        for (int i = 0; i < SLOTS; ++i)
          if (slot[i] == h) live[i] = 0;
        break;
      case 2: { /* run with lengths, alignment, NULLs and overlap chosen by the input */
        uint8_t v = fz_u8(&in);
        size_t li = nin, lo = nout;
        if (v & 1) li += (size_t)(int8_t)fz_u8(&in);
        if (v & 2) lo += (size_t)(int8_t)fz_u8(&in);
        li = li > nin + 16 ? nin : li, lo = lo > nout + 16 ? nout : lo; /* never past our buffers */
        const float* x = v & 4 ? xin + 1 : xin;
        float* y = v & 8 ? yout + 1 : yout;
        if ((v & 4) && li > nin + 15) li = nin; /* the unaligned view has one element less */
        if ((v & 8) && lo > nout + 15) lo = nout;
        if (v & 16) x = NULL;
        if (v & 32) y = NULL;
        int overlap = (v & 64) != 0;
        if (overlap) x = yout; /* input inside the output buffer */
        for (size_t i = 0; i < nin; ++i) xin[i] = (float)fz_u8(&in) / 255.0f;
        yout[0] = -7.0f;
        int rc = srmodel_run(h, x, li, y, lo);
        if (!h || !alive) CHECK(rc == SRMODEL_ERR_ARG && yout[0] == -7.0f);
        else if (!x || !y) CHECK(rc == SRMODEL_ERR_ARG);
        else if (li != nin || lo != nout) CHECK(rc == SRMODEL_ERR_SIZE && yout[0] == -7.0f);
        else if (overlap) CHECK(rc == SRMODEL_ERR_ARG);
        else CHECK(rc == SRMODEL_OK);
        break;
      }
      case 3: { /* run_rgb8 */
        uint8_t v = fz_u8(&in);
        size_t li = v & 1 ? nin - 1 : nin, lo = v & 2 ? nout - 3 : nout;
        for (size_t i = 0; i < nin; ++i) rgb_in[i] = fz_u8(&in);
        int rc = srmodel_run_rgb8(h, v & 4 ? NULL : rgb_in, li, rgb_out, lo);
        if (!h || !alive) CHECK(rc == SRMODEL_ERR_ARG);
        else if (v & 4) CHECK(rc == SRMODEL_ERR_ARG);
        else if (li != nin || lo != nout) CHECK(rc == SRMODEL_ERR_SIZE);
        else CHECK(rc == SRMODEL_OK);
        break;
      }
      case 4: { /* set_threads: any int; valid counts kept small so runs stay fast */
        int32_t t = fz_i32(&in);
        if (t >= 1 && t <= 256) t = 1 + t % 3;
        int rc = srmodel_set_threads(h, t);
        CHECK(rc == (h && alive && t >= 1 && t <= 256 ? SRMODEL_OK : SRMODEL_ERR_ARG));
        if (rc == SRMODEL_OK) CHECK(srmodel_get_threads(h) == t);
        break;
      }
      case 5: /* get_threads */
        if (h && alive) CHECK(srmodel_get_threads(h) >= 1);
        else CHECK(srmodel_get_threads(h) == -1);
        break;
      case 6: { /* shapes, into a buffer or NULL */
        int64_t shp[4] = {-1, -1, -1, -1};
        int use_null = fz_u8(&in) & 1;
        int rc = (code & 1 ? srmodel_input_shape : srmodel_output_shape)(h, use_null ? NULL : shp);
        CHECK(rc == (h && alive && !use_null ? SRMODEL_OK : SRMODEL_ERR_ARG));
        if (rc) CHECK(shp[0] == -1);
        break;
      }
      case 7: { /* last_error is never NULL, for any handle */
        const char* e = srmodel_last_error(h);
        CHECK(e && strlen(e) < 512);
        CHECK(srmodel_last_error(NULL) != NULL);
        break;
      }
      default:
        CHECK(srmodel_describe() && srmodel_abi_version() == SRMODEL_ABI_VERSION);
        break;
    }
  }
  for (int i = 0; i < SLOTS; ++i) /* no model outlives the input */
    if (live[i] && slot[i]) {
      srmodel* h = slot[i];
      srmodel_destroy(h);
      for (int j = 0; j < SLOTS; ++j)
        if (slot[j] == h) live[j] = 0;
    }
  return 0;
}
