/* srmodel_rt.h: internal types shared by the runtime (srmodel_rt.c) and a generated driver (model.c).
 *
 * Freestanding on purpose: only compiler-provided headers, so one source builds for glibc hosts,
 * Debian's aarch64 cross toolchain and Android (bionic) without any sysroot. The few libc
 * functions used are declared in srmodel_rt.c with storage sized for both C libraries.
 */
#ifndef SRMODEL_RT_H_
#define SRMODEL_RT_H_

#include <stddef.h>
#include <stdint.h>

/* DLPack's DLTensor and tvm-ffi's TVMFFIAny, laid out exactly as TVM-generated code reads them. */
typedef struct { int32_t device_type, device_id; } srm_device;
typedef struct { uint8_t code, bits; uint16_t lanes; } srm_dtype;
typedef struct {
  void* data;
  srm_device device;
  int32_t ndim;
  srm_dtype dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} srm_dltensor;
typedef struct {
  int32_t type_index;
  uint32_t zero_padding;
  union { int64_t v_int64; double v_float64; void* v_ptr; } v;
} srm_any;
#define SRM_FFI_NONE 0
#define SRM_FFI_DLTENSOR_PTR 7

/* TVMFFISafeCallType: what each compiled PrimFunc (symbol __tvm_ffi_NAME) is. */
typedef int32_t (*srm_kernel_fn)(void* self, const srm_any* args, int32_t num_args, srm_any* result);

/* Where a tensor's bytes live (plan.py REGION_*). */
#define SRM_REGION_ARENA 0
#define SRM_REGION_INPUT 1
#define SRM_REGION_OUTPUT 2
#define SRM_REGION_CONST 3

typedef struct {
  uint8_t region, dtype_code, dtype_bits, ndim;
  uint32_t shape_at; /* index of its first dimension in srm_plan.shapes */
  uint64_t offset;   /* bytes from the region's start */
} srm_tensor_desc;

typedef struct {
  srm_kernel_fn fn;
  const char* name;
  uint32_t first_arg, num_args; /* slice of srm_plan.args (tensor indices) */
} srm_step_desc;

typedef struct {
  const char* describe;
  int64_t input_shape[4];
  int64_t output_shape[4];
  uint64_t arena_bytes;
  uint32_t num_tensors, num_steps, max_args;
  const srm_tensor_desc* tensors;
  const int64_t* shapes;
  const srm_step_desc* steps;
  const uint32_t* args;
  const unsigned char* consts;
  uint32_t input_tensor, output_tensor;
  int32_t output_copy; /* 1: the result lives in the arena and is copied to the caller's buffer */
  int32_t default_threads;
  uint32_t required_features; /* SRM_FEAT_* (srmodel_cpu.h) checked by srmodel_create */
  const char* target;         /* the target's name, for that message */
} srm_plan;

/* Defined by the generated model.c. */
extern const srm_plan srm_model_plan;

#endif /* SRMODEL_RT_H_ */
