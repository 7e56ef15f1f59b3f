"""torch -> TVM Relax compilation for named targets, kernels, latency measurement.

Must not import `srprune` or `supernet` (dependencies point one way, see DESIGN.md).

Modules (import them directly; this package imports no TVM on its own):
- `targets`: named targets (`get_target("host" | "linux-arm64" | "android-arm64[-fp16|-dotprod]")`).
- `importer`: `import_module(model, shape)`, torch.export -> Relax.
- `kernels`: our conv2d template (TE + TIR schedule, SIMD width as a parameter).
- `rewrite`: `fuse_convs(mod, vec)`, conv (+bias+ReLU/PReLU+residual) chains -> kernel calls.
- `build`: `compile_model(model, shape, target)` -> `CompiledModel`, checked against PyTorch.
- `artifact`: `write_artifact(compiled, dir)` (library + manifest.json), `load_artifact(dir)`.
- `bench`: `bench_engines(model, shape)`: TVM vs PyTorch vs ONNX Runtime, interleaved.
"""
