/* fuzz_input.h: reading typed values from libFuzzer's bytes (zeros once they run out). */
#ifndef FUZZ_INPUT_H_
#define FUZZ_INPUT_H_

#include <stddef.h>
#include <stdint.h>

typedef struct { const uint8_t* p; size_t n; } fz_in;

static inline uint64_t fz_bytes(fz_in* in, int k) {
  uint64_t v = 0;
  for (int i = 0; i < k; ++i) {
    v = v << 8 | (in->n ? *in->p : 0);
    if (in->n) in->p++, in->n--;
  }
  return v;
}
static inline uint8_t fz_u8(fz_in* in) { return (uint8_t)fz_bytes(in, 1); }
static inline int32_t fz_i32(fz_in* in) { return (int32_t)(uint32_t)fz_bytes(in, 4); }

/* An int that is small (0..40) most of the time, else any 32-bit value (negative and huge included). */
static inline int32_t fz_size(fz_in* in) {
  uint8_t sel = fz_u8(in);
  return sel < 200 ? (int32_t)(sel % 41) : fz_i32(in);
}

#endif /* FUZZ_INPUT_H_ */
