"""The c-lib format: a compiled model as one dependency-free C library (issue 8).

- `plan`: lower with the project's Relax pipeline and read `main` as a static plan (tensors, calls, arena).
- `codegen`: the generated C driver (tables) and the embedded constants.
- `csrc/`: `srmodel.h` (the public C ABI), `srmodel_rt.c` (thread pool, workspace, errors, the plan
  interpreter), `srmodel_bench.c` (dlopen + timing executable).
- `toolchain`: compilers/linkers per target, symbol checks, stub bionic libraries for Android.
- `export`: `build_clib(model, shape, target, out_dir)` -> library folder + manifest.
- `runner`: `CLib(path)`, the library through ctypes.
"""
