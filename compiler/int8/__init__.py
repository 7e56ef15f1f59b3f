"""int8 conv kernels (docs/quantization.md's contract): the dot-product forms (isa), the conv template (kernel)
and whole QConv networks as a TVM module or a c-lib (network)."""
