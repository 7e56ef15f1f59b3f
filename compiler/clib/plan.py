"""Lower a model with compiler.pipeline, stopped after `plan_memory`, and read its `main` as a static execution plan.

Why stop the pipeline early: after `StaticPlanBlockMemory` + `LowerAllocTensor` the Relax `main` is
a straight line of `alloc_storage` / `alloc_tensor` bindings and direct calls of PrimFuncs with
their output buffers, which is exactly what a C driver needs (the later VM passes only add VM
builtins). The kernels and the remaining loop nests are the same ones `compiler.build` uses for the
Relax VM, so the C library and the VM run identical code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import tvm
from torch import nn
from tvm import relax

from compiler.errors import CompilerError
from compiler.pipeline import Phase, lower
from compiler.targets import TargetSpec, get_target

ALIGN = 64  # bytes; TVM buffers assume 64-byte aligned data

# region codes shared with csrc/srmodel_rt.h
REGION_ARENA, REGION_INPUT, REGION_OUTPUT, REGION_CONST = 0, 1, 2, 3

_DTYPES = {"float32": (2, 32), "float16": (2, 16), "float64": (2, 64), "int32": (0, 32), "int64": (0, 64),
           "int8": (0, 8), "uint8": (1, 8), "int16": (0, 16), "bool": (6, 8)}


@dataclass(frozen=True)
class TensorDesc:
    """One buffer as the kernels see it: where its bytes live and its shape/dtype."""

    region: int
    offset: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * _DTYPES[self.dtype][1] // 8


@dataclass(frozen=True)
class Step:
    """One kernel call: the PrimFunc's global symbol and its argument tensors (indices)."""

    func: str
    args: tuple[int, ...]


@dataclass
class Plan:
    """Everything the C driver needs: tensors, calls in order, arena size, constants blob."""

    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, ...]
    tensors: list[TensorDesc]
    steps: list[Step]
    arena_bytes: int
    consts: bytes
    input_tensor: int
    output_tensor: int
    output_copy: bool  # True: the result lives in the arena and is copied out after the last step
    tir: tvm.IRModule = field(repr=False, default=None)
    fused_convs: int = 0

    @property
    def kernels(self) -> list[str]:
        """Distinct kernel symbols in first-use order."""
        return list(dict.fromkeys(s.func for s in self.steps))


def _round_up(x: int, m: int = ALIGN) -> int:
    return (x + m - 1) // m * m


def _static(shape_expr) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in shape_expr.values)
    except (TypeError, AttributeError, ValueError) as exc:
        raise CompilerError("c-lib needs static shapes; found a symbolic shape") from exc


def _tensor_type(expr) -> tuple[tuple[int, ...], str]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise CompilerError(f"c-lib supports tensors only; found a value of type {ty}")
    dtype = str(ty.dtype)
    if dtype not in _DTYPES:
        raise CompilerError(f"c-lib does not support dtype {dtype}")
    return _static(ty.shape), dtype


def _op_name(value) -> str:
    return value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else ""


class _Walker:
    """Reads the lowered `main` binding by binding; anything else is refused with its name."""

    def __init__(self, mod: tvm.IRModule) -> None:
        self.mod = mod
        self.tensors: list[TensorDesc] = []
        self.storages: dict[relax.Var, int] = {}  # storage var -> size in bytes
        self.storage_of: dict[int, relax.Var] = {}  # tensor index -> storage var (arena tensors)
        self.var_tensor: dict[relax.Var, int] = {}
        self.consts: dict[str, int] = {}  # sha1 -> blob offset
        self.blob = bytearray()
        self.steps: list[Step] = []
        self.const_tensor: dict[tuple, int] = {}

    def _add(self, desc: TensorDesc) -> int:
        self.tensors.append(desc)
        return len(self.tensors) - 1

    def const(self, c) -> int:
        arr = np.ascontiguousarray(c.value.numpy())
        dtype = str(arr.dtype)
        if dtype not in _DTYPES:
            raise CompilerError(f"c-lib does not support constants of dtype {dtype}")
        raw = arr.tobytes()
        key = hashlib.sha1(raw + dtype.encode() + str(arr.shape).encode()).hexdigest()
        if key not in self.consts:
            self.blob.extend(b"\0" * (_round_up(len(self.blob)) - len(self.blob)))
            self.consts[key] = len(self.blob)
            self.blob.extend(raw)
        tkey = (self.consts[key], arr.shape, dtype)
        if tkey not in self.const_tensor:
            self.const_tensor[tkey] = self._add(TensorDesc(REGION_CONST, self.consts[key], tuple(arr.shape), dtype))
        return self.const_tensor[tkey]

    def arg(self, expr) -> int:
        if isinstance(expr, relax.Var):
            if expr not in self.var_tensor:
                raise CompilerError(f"c-lib: variable {expr.name} is not a tensor the driver knows")
            return self.var_tensor[expr]
        if isinstance(expr, tvm.ir.expr.GenericConst) and isinstance(expr.ty, relax.TensorType):
            return self.const(expr)
        raise CompilerError(f"c-lib does not support kernel arguments of kind {type(expr).__name__}")

    def binding(self, b) -> None:
        if not isinstance(b, relax.VarBinding):
            raise CompilerError(f"c-lib does not support {type(b).__name__} bindings")
        value, name = b.value, _op_name(b.value)
        if name == "relax.memory.alloc_storage":
            scope = value.args[2].value if hasattr(value.args[2], "value") else "global"
            if scope != "global":
                raise CompilerError(f"c-lib supports global storage only, found scope {scope!r}")
            (size,) = _static(value.args[0])
            self.storages[b.var] = int(size)
        elif name == "relax.memory.alloc_tensor":
            storage = value.args[0]
            if storage not in self.storages:
                raise CompilerError("c-lib: alloc_tensor on a storage the driver did not see allocated")
            shape, dtype = _tensor_type(b.var)
            desc = TensorDesc(REGION_ARENA, int(value.args[1].value), shape, dtype)
            if desc.offset + desc.nbytes > self.storages[storage]:
                raise CompilerError("c-lib: a tensor overruns its storage")
            idx = self._add(desc)
            self.storage_of[idx] = storage
            self.var_tensor[b.var] = idx
        elif isinstance(value, relax.Var):
            self.var_tensor[b.var] = self.arg(value)
        elif name == "relax.reshape":
            src = self.arg(value.args[0])
            shape, dtype = _tensor_type(b.var)
            old = self.tensors[src]
            new = TensorDesc(old.region, old.offset, shape, dtype)
            if new.nbytes != old.nbytes:
                raise CompilerError("c-lib: reshape changes the number of bytes")
            idx = self._add(new)
            if src in self.storage_of:
                self.storage_of[idx] = self.storage_of[src]
            self.var_tensor[b.var] = idx
        elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
            func = self.mod[value.op]
            if not isinstance(func, tvm.tirx.PrimFunc):
                raise CompilerError(f"c-lib: {value.op.name_hint} is not a TIR function (nested Relax calls "
                                    "are not supported)")
            if len(func.params) != len(value.args):
                raise CompilerError(f"c-lib: {value.op.name_hint} takes {len(func.params)} arguments, "
                                    f"called with {len(value.args)}")
            symbol = str(func.attrs["global_symbol"]) if func.attrs and "global_symbol" in func.attrs \
                else value.op.name_hint
            self.steps.append(Step(symbol, tuple(self.arg(a) for a in value.args)))
        else:
            what = name or type(value).__name__
            if isinstance(value, relax.Call) and isinstance(value.op, relax.ExternFunc):
                what = f"call_packed {value.op.global_symbol}"
            raise CompilerError(f"c-lib does not support {what} in the lowered model")


def plan_from_relax(mod: tvm.IRModule, fused: int = 0) -> Plan:
    """Walk the lowered `main` into a Plan; one arena with each storage at a 64-byte aligned offset."""
    main = mod["main"]
    if len(main.params) != 1:
        raise CompilerError(f"c-lib supports models with one input, this one has {len(main.params)}")
    in_shape, in_dtype = _tensor_type(main.params[0])
    if in_dtype != "float32" or len(in_shape) != 4:
        raise CompilerError(f"c-lib needs one float32 NCHW input, got {in_dtype} {in_shape}")
    w = _Walker(mod)
    w.var_tensor[main.params[0]] = w._add(TensorDesc(REGION_INPUT, 0, in_shape, "float32"))
    for block in main.body.blocks:
        for b in block.bindings:
            w.binding(b)
    ret = main.body.body
    if not isinstance(ret, relax.Var):
        raise CompilerError("c-lib supports a model that returns one tensor")
    out_idx = w.arg(ret)
    out = w.tensors[out_idx]
    if out.dtype != "float32":
        raise CompilerError(f"c-lib needs a float32 output, got {out.dtype}")
    if out.region != REGION_ARENA:
        raise CompilerError("c-lib: the model returns its input or a constant unchanged; nothing to compile")

    # Give the output its own region when its storage holds nothing else: kernels write into the caller's buffer.
    out_storage = w.storage_of[out_idx]
    sharers = [i for i, s in w.storage_of.items() if s.same_as(out_storage)]
    direct = all(w.tensors[i].offset == 0 and w.tensors[i].nbytes == out.nbytes for i in sharers)
    offsets, arena = {}, 0
    for storage, size in w.storages.items():
        if direct and storage.same_as(out_storage):
            continue
        offsets[storage] = arena
        arena = _round_up(arena + size)
    tensors = list(w.tensors)
    for i, storage in w.storage_of.items():
        t = tensors[i]
        if direct and storage.same_as(out_storage):
            tensors[i] = TensorDesc(REGION_OUTPUT, 0, t.shape, t.dtype)
        else:
            tensors[i] = TensorDesc(REGION_ARENA, offsets[storage] + t.offset, t.shape, t.dtype)
    tir = tvm.IRModule({gv: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)})
    return Plan(in_shape, out.shape, tensors, w.steps, arena, bytes(w.blob), 0, out_idx, not direct, tir, fused)


def build_plan(model: nn.Module, input_shape: tuple[int, int, int, int],
               target: str | TargetSpec = "host", tuning_db: str | None = None) -> Plan:
    """The static plan of `model` for one input shape and target (our kernels, TVM's lowering)."""
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    mod, fused = lower(model, input_shape, spec, tuning_db=tuning_db, stop_after=Phase.PLAN_MEMORY)
    return plan_from_relax(mod, fused)
