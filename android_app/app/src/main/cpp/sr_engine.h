/* sr_engine.h: one staged model library opened with dlopen, frames in and out as RGBA8888.
 *
 * Why dlopen instead of linking libsrmodel.so: a missing or foreign library (no model staged, another
 * ABI) becomes an error message in the app instead of a crash of System.loadLibrary, and the same
 * engine is driven by the qemu test harness. The ABI is srmodel.h (staged beside this file).
 */
#ifndef SR_ENGINE_H_
#define SR_ENGINE_H_

#include <stddef.h>
#include <stdint.h>

typedef struct sre_engine sre_engine;

/* Open the model library at `path`; NULL on failure with the reason in `err` (err_len bytes). */
sre_engine* sre_open(const char* path, int threads, char* err, size_t err_len);
void sre_close(sre_engine* e);
/* Every call below accepts a NULL engine (closed): sizes 0, describe/error "the engine is closed", the rest
 * SRMODEL_ERR_ARG or -1. */
/* Input and output frame sizes in pixels (the model's fixed shape). */
void sre_sizes(const sre_engine* e, int* in_w, int* in_h, int* out_w, int* out_h);
const char* sre_describe(const sre_engine* e);
/* 0 or an SRMODEL_ERR_* code; the message is sre_error(e). */
int sre_set_threads(sre_engine* e, int threads);
int sre_get_threads(const sre_engine* e);
/* Upscale one RGBA frame (in_w x in_h, in_stride bytes a row) into out (out_stride bytes a row).
 * *model_ms gets the time of the model call alone (milliseconds, monotonic clock). */
int sre_run_rgba(sre_engine* e, const uint8_t* in, size_t in_stride, uint8_t* out, size_t out_stride,
                 double* model_ms);
const char* sre_error(const sre_engine* e);

#endif /* SR_ENGINE_H_ */
