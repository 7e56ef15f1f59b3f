"""int8 quantisation of SR models (docs/quantization.md): the plan of a deployed model (`plan`), activation
ranges (`ranges`), the integer model "quantized" and its QConv export (`qmodel`), PTQ and QAT (`quantize`).

Nothing is imported here: srprune.models imports `qmodel` to register the architecture, and importing the
package must not pull in the training code.
"""
