/* srmodel.h: the C ABI of one compiled srprune super-resolution model (no dependencies).
 *
 * One library = one model for one fixed input shape. Typical use:
 *
 *   srmodel *m; if (srmodel_create(&m) != SRMODEL_OK) puts(srmodel_last_error(NULL));
 *   int64_t in[4], out[4]; srmodel_input_shape(m, in); srmodel_output_shape(m, out);
 *   srmodel_run(m, input, n_in, output, n_out);      // float32 NCHW in [0, 1], counts in floats
 *   srmodel_run_rgb8(m, rgb, n_rgb, out_rgb, n_out);  // uint8 RGB HxWx3, counts in bytes
 *   srmodel_destroy(m);
 *
 * Every call returns SRMODEL_OK (0) or an error code; srmodel_last_error(m) then says why
 * (srmodel_last_error(NULL) for create and for calls made with a NULL model).
 * Runs are serialised inside the library (one shared thread pool); buffers with a 64-byte aligned
 * address avoid an internal copy. Input and output must not overlap.
 *
 * Handles: a handle carries a magic number checked by every call and poisoned by srmodel_destroy; the
 * library keeps a destroyed handle's memory (reused by a later srmodel_create) instead of freeing it. So a
 * call with a destroyed handle, and a second srmodel_destroy, return SRMODEL_ERR_ARG (destroy: does nothing)
 * with the message in srmodel_last_error(NULL), as a NULL model does. What remains undefined:
 *   - a pointer that srmodel_create never returned (garbage, a pointer into other memory);
 *   - a destroyed handle whose memory a later srmodel_create reused: it is then that new, live model, and
 *     calls act on it (the stale copy cannot be told apart);
 *   - a handle used after the library was unloaded (dlclose);
 *   - destroying a model while another thread is inside a call on it, other than run / run_rgb8 (which
 *     re-check the handle under the library's lock).
 */
#ifndef SRMODEL_H_
#define SRMODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SRMODEL_ABI_VERSION 1

#define SRMODEL_OK 0
#define SRMODEL_ERR_ARG 1    /* a NULL pointer, an invalid value, or a destroyed / foreign handle */
#define SRMODEL_ERR_SIZE 2   /* a buffer length that differs from the model's */
#define SRMODEL_ERR_NOMEM 3  /* out of memory */
#define SRMODEL_ERR_KERNEL 4 /* a compiled kernel reported an error */
#define SRMODEL_ERR_THREAD 5 /* a worker thread could not be started */
#define SRMODEL_ERR_CPU 6    /* create: the CPU lacks an instruction set extension the library was compiled for */

#ifndef SRMODEL_API
#define SRMODEL_API __attribute__((visibility("default")))
#endif

typedef struct srmodel srmodel;

/* ABI version of this library (SRMODEL_ABI_VERSION when it was built). */
SRMODEL_API int srmodel_abi_version(void);
/* A short description of the compiled model ("name xS, target, input NxCxHxW"). */
SRMODEL_API const char* srmodel_describe(void);
/* Allocate a model (its working memory); *out is NULL on failure. */
SRMODEL_API int srmodel_create(srmodel** out);
/* Free a model; NULL is ignored; a destroyed handle is refused (message in srmodel_last_error(NULL)). */
SRMODEL_API void srmodel_destroy(srmodel* m);
/* The NCHW input / output shape (4 values). */
SRMODEL_API int srmodel_input_shape(const srmodel* m, int64_t shape[4]);
SRMODEL_API int srmodel_output_shape(const srmodel* m, int64_t shape[4]);
/* Threads used by run (1..256); takes effect on the next run. */
SRMODEL_API int srmodel_set_threads(srmodel* m, int threads);
/* The thread count, or -1 for a NULL or destroyed model. */
SRMODEL_API int srmodel_get_threads(const srmodel* m);
/* float32 NCHW input (input_len = N*C*H*W floats) -> float32 NCHW output (output_len floats). */
SRMODEL_API int srmodel_run(srmodel* m, const float* input, size_t input_len, float* output, size_t output_len);
/* uint8 RGB HxWx3 in and out (N = 1, C = 3): scaled to [0, 1], run, clamped and rounded back. */
SRMODEL_API int srmodel_run_rgb8(srmodel* m, const uint8_t* rgb, size_t rgb_len, uint8_t* out_rgb,
                                 size_t out_len);
/* Why the last failing call on m failed; for NULL (or a destroyed m): the last failed create or call made with a
 * NULL or destroyed model. Never NULL. */
SRMODEL_API const char* srmodel_last_error(const srmodel* m);

#ifdef __cplusplus
}
#endif
#endif /* SRMODEL_H_ */
