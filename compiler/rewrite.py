"""Relax pass: replace conv2d (+ bias + activation + residual add) (+ PixelShuffle) chains with calls to our kernels.

Why a rewrite instead of a TIR schedule on the legalised conv: the legalised conv has no CPU
schedule in TVM 0.27, and scheduling it after the fact cannot change the weight layout. Here each
chain of `conv2d -> add(bias) -> activation -> add(residual)` whose intermediate results have no
other use (the activation: any of compiler.epilogue.ACTIVATIONS, see `_activation_after`) becomes one
`call_tir` to a kernel from `compiler.kernels`, with its weights packed as constants at compile time. A PixelShuffle right after a chain (reshape -> permute_dims -> reshape, as
torch.export gives it) is fused into the dense kernel's write-back, and a residual that is the input repeated
over channels (torch's repeat_interleave: ECBSR's nearest-neighbour skip) is read from the input itself, so an
SR network's tail writes the image directly. Anything the kernels do not cover (stride, dilation, dynamic shapes,
non-constant weights) is left to TVM's default lowering, so the result is always correct.

Per chain the rewrite picks the dense kernel (compiler.kernels) or a sparse one (compiler.sparse:
the zero pattern of the constant weight baked into the code) with `compiler.sparse.choose_kernel`, and a dense
3x3 one the direct or a Winograd kernel (compiler.winograd) with `compiler.winograd.choose_conv_kernel`;
`fuse_convs_report` says which chain got which.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from compiler.errors import CompilerError
from compiler.kernels import ConvSpec, Schedule, choose_schedule, conv2d_primfunc, pack_weight
from compiler.relax_util import const_value, op_name, static_shape
from compiler.sparse import DEFAULT_THRESHOLD, choose_kernel, pack_sparse_weight, sparse_conv2d_primfunc
from compiler.winograd import (choose_conv_kernel, choose_winograd_schedule, dense_relative_cost, transform_weight,
                               winograd_primfunc)


@dataclass
class ConvChain:
    """One fusable chain found in `main`; `end` is the binding var whose value the kernel replaces."""

    conv_var: relax.Var
    data: relax.Expr
    weight: np.ndarray
    pad: tuple[int, int, int, int]
    groups: int
    end: relax.Var
    bias: np.ndarray | None = None
    act: str = "none"
    alpha: np.ndarray | None = None
    residual: relax.Expr | None = None
    members: list[relax.Var] = field(default_factory=list)
    # the residual as `repeat_source` repeat_interleave'd `residual_repeat` times over channels, if it is that
    repeat_source: relax.Expr | None = None
    residual_repeat: int = 1
    shuffle: int = 1  # PixelShuffle factor fused after the chain (1: none)
    slope: float = 0.0  # leaky ReLU's negative slope
    conv_end: relax.Var | None = None  # the chain's last binding before the fused PixelShuffle


def _conv_head(call: relax.Call) -> tuple[np.ndarray, tuple[int, int, int, int], int] | None:
    """The (weight, padding, groups) of a conv2d our kernels support, else None."""
    attrs = call.attrs
    weight = const_value(call.args[1])
    if weight is None or static_shape(call.args[0]) is None or len(static_shape(call.args[0])) != 4:
        return None
    if [int(s) for s in attrs.strides] != [1, 1] or [int(d) for d in attrs.dilation] != [1, 1]:
        return None
    if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
        return None
    if attrs.out_dtype not in ("", "float32") or weight.dtype != np.float32:
        return None
    pad = [int(p) for p in attrs.padding]
    pad4 = (pad[0], pad[1], pad[2], pad[3]) if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    return weight, pad4, int(attrs.groups)


def find_chains(func: relax.Function) -> list[ConvChain]:
    """All fusable conv chains of a function, in program order."""
    bindings = [b for block in func.body.blocks for b in block.bindings if isinstance(b, relax.VarBinding)]
    uses: dict[relax.Var, list[relax.VarBinding]] = {}
    for binding in bindings:
        for var in relax.analysis.free_vars(binding.value):
            uses.setdefault(var, []).append(binding)
    outputs = set(relax.analysis.free_vars(func.body.body))

    def users_of(var: relax.Var) -> list[relax.VarBinding]:
        """The bindings that read `var` (none when the function returns it: its value must stay)."""
        return [] if var in outputs else uses.get(var, [])

    def sole_user(var: relax.Var) -> relax.VarBinding | None:
        users = users_of(var)
        return users[0] if len(users) == 1 else None

    values = {b.var: b.value for b in bindings}
    chains = []
    claimed: set[relax.Var] = set()  # bindings already inside an earlier chain
    for binding in bindings:
        if op_name(binding.value) != "relax.nn.conv2d":
            continue
        head = _conv_head(binding.value)
        if head is None:
            continue
        weight, pad, groups = head
        cout = weight.shape[0]
        chain = ConvChain(binding.var, binding.value.args[0], weight, pad, groups, binding.var)
        chain.members.append(binding.var)
        stage = 0  # 0: bias next, 1: activation next, 2: residual next, 3: done
        while stage < 3:
            act = _activation_after(chain.end, users_of, cout) if stage <= 1 else None
            if act is not None and not claimed.intersection(act.vars):
                chain.act, chain.alpha, chain.slope, stage = act.name, act.alpha, act.slope, 2
                chain.end = act.vars[-1]
                chain.members.extend(act.vars)
                continue
            user = sole_user(chain.end)
            if user is None or user.var in claimed:  # e.g. tail conv + skip conv meeting in one add: first wins
                break
            value, name = user.value, op_name(user.value)
            other = None
            if name == "relax.add":
                other = value.args[1] if value.args[0].same_as(chain.end) else value.args[0]
            if stage == 0 and other is not None and const_value(other) is not None:
                b = const_value(other)
                if b.size != cout or b.shape not in ((1, cout, 1, 1), (cout, 1, 1)):
                    break
                chain.bias, stage = b.reshape(cout).astype("float32"), 1
            elif other is not None and const_value(other) is None and static_shape(other) == static_shape(chain.end):
                chain.residual, stage = other, 3
            else:
                break
            chain.end = user.var
            chain.members.append(user.var)
        if chain.residual is not None:
            chain.repeat_source, chain.residual_repeat = _channel_repeat(chain.residual, values)
        chain.conv_end = chain.end
        shuffle = _pixel_shuffle_after(chain.end, sole_user)
        if shuffle is not None:
            chain.shuffle, shuffle_vars = shuffle
            chain.end = shuffle_vars[-1]
            chain.members.extend(shuffle_vars)
        chains.append(chain)
        claimed.update(chain.members)
    return chains


# Activations that are one Relax op applied to the conv's output, as torch.export + the frontend give them.
_UNARY_ACTIVATIONS = {"relax.nn.relu": "relu", "relax.tanh": "tanh", "relax.sigmoid": "sigmoid",
                      "relax.nn.silu": "silu", "relax.nn.gelu": "gelu", "relax.nn.gelu_tanh": "gelu_tanh"}


@dataclass
class _Activation:
    """An activation found after a conv: its kernel name (compiler.epilogue), the bindings it spans, parameters."""

    name: str
    vars: list[relax.Var]
    alpha: np.ndarray | None = None
    slope: float = 0.0


def _activation_after(var: relax.Var, users_of, cout: int) -> _Activation | None:
    """The activation applied to `var` (whose every use it must be), else None.

    One op: relu, tanh, sigmoid, silu, gelu (erf form), gelu_tanh, leakyrelu (constant slope), prelu (constant
    per-channel or single slope, channel axis). Two patterns read `var` twice, so they are matched here rather than
    by following a sole user: SiLU as torch.export gives it, `x * sigmoid(x)`, and Hardswish, `x * clip(x + 3, 0,
    6) / 6` (the clip possibly split in two).
    """
    users = users_of(var)
    if len(users) == 2:
        return _silu(var, users, users_of) or _hardswish(var, users, users_of)
    if len(users) != 1:
        return None
    binding = users[0]
    value, name = binding.value, op_name(binding.value)
    if name in _UNARY_ACTIVATIONS:
        return _Activation(_UNARY_ACTIVATIONS[name], [binding.var])
    if name == "relax.nn.leakyrelu":
        return _Activation("leaky_relu", [binding.var], slope=float(value.attrs.alpha))
    if name == "relax.nn.prelu" and const_value(value.args[1]) is not None and int(value.attrs.axis) == 1:
        alpha = const_value(value.args[1]).reshape(-1).astype("float32")
        if alpha.size in (1, cout):
            return _Activation("prelu", [binding.var], alpha=np.broadcast_to(alpha, (cout,)).copy())
    return None


def _reads(call: relax.Expr, a: relax.Expr, b: relax.Expr) -> bool:
    """Whether a binary call's two arguments are a and b, in either order."""
    x, y = call.args[0], call.args[1]
    return (x.same_as(a) and y.same_as(b)) or (x.same_as(b) and y.same_as(a))


def _scalar(expr: relax.Expr) -> float | None:
    """The value of a one-element float constant, else None."""
    value = const_value(expr)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _only(users: list, binding: relax.VarBinding) -> bool:
    """Whether `binding` is the one user in `users`."""
    return len(users) == 1 and users[0].same_as(binding)


def _silu(var: relax.Var, users: list, users_of) -> _Activation | None:
    """sigmoid(var) -> multiply(var, that): SiLU."""
    sig, mul = users
    if op_name(sig.value) != "relax.sigmoid" or op_name(mul.value) != "relax.multiply" \
            or not _only(users_of(sig.var), mul) or not _reads(mul.value, var, sig.var):
        return None
    return _Activation("silu", [sig.var, mul.var])


def _hardswish(var: relax.Var, users: list, users_of) -> _Activation | None:
    """add(var, 3) -> clip(., 0, 6) (one or more clips) -> multiply(var, that) -> divide(., 6): Hardswish."""
    add, mul = users
    value = add.value
    if op_name(value) != "relax.add" or op_name(mul.value) != "relax.multiply":
        return None
    if _scalar(value.args[1] if value.args[0].same_as(var) else value.args[0]) != 3.0:
        return None
    steps, lo, hi = [add], -np.inf, np.inf
    while len(users_of(steps[-1].var)) == 1 and op_name(users_of(steps[-1].var)[0].value) == "relax.clip":
        clip = users_of(steps[-1].var)[0]
        bounds = [getattr(a, "value", None) for a in clip.value.args[1:]]  # IntImm / FloatImm bounds
        bounds = [float(b) if isinstance(b, (int, float)) else None for b in bounds]
        if None in bounds:
            return None
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        steps.append(clip)
    if (lo, hi) != (0.0, 6.0) or not _only(users_of(steps[-1].var), mul) or not _reads(mul.value, var, steps[-1].var):
        return None
    div = users_of(mul.var)
    if len(div) != 1 or op_name(div[0].value) != "relax.divide" or not div[0].value.args[0].same_as(mul.var) \
            or _scalar(div[0].value.args[1]) != 6.0:
        return None
    return _Activation("hardswish", [*(s.var for s in steps), mul.var, div[0].var])


def _channel_repeat(expr: relax.Expr, values: dict) -> tuple[relax.Expr | None, int]:
    """(s, r) if `expr` is s repeated r times per channel (repeat_interleave(s, r, dim=1) as torch.export gives
    it: reshape(broadcast_to(expand_dims(s, axis=2), (n, c, r, h, w)), (n, c*r, h, w))), else (None, 1)."""
    reshaped = values.get(expr)
    if op_name(reshaped) != "relax.reshape":
        return None, 1
    broadcast = values.get(reshaped.args[0])
    if op_name(broadcast) != "relax.broadcast_to":
        return None, 1
    expanded = values.get(broadcast.args[0])
    if op_name(expanded) != "relax.expand_dims" or [int(a) for a in expanded.attrs.axis] != [2]:
        return None, 1
    source = expanded.args[0]
    src, mid, out = static_shape(source), static_shape(reshaped.args[0]), static_shape(expr)
    if src is None or mid is None or out is None or len(src) != 4 or len(mid) != 5:
        return None, 1
    n, c, h, w = src
    r = mid[2]
    if tuple(mid) != (n, c, r, h, w) or tuple(out) != (n, c * r, h, w):
        return None, 1
    return source, r


def _name_suffix(spec: ConvSpec) -> str:
    """What a dense kernel's name adds after its shape: the fused activation and PixelShuffle (reports, profiles)."""
    return (f"{'_' + spec.act if spec.act != 'none' else ''}"
            f"{'_shuffle' + str(spec.shuffle) if spec.shuffle > 1 else ''}")


def _pixel_shuffle_after(var: relax.Var, sole_user) -> tuple[int, list[relax.Var]] | None:
    """(s, [the three bindings]) if `var` only feeds PixelShuffle(s) as torch.export gives it:
    reshape (n, c, s, s, h, w) -> permute_dims (0, 1, 4, 2, 5, 3) -> reshape (n, c, h*s, w*s); else None."""
    shape = static_shape(var)
    if shape is None or len(shape) != 4:
        return None
    n, cs, h, w = shape
    steps = []
    for op in ("relax.reshape", "relax.permute_dims", "relax.reshape"):
        user = sole_user(steps[-1].var if steps else var)
        if user is None or op_name(user.value) != op:
            return None
        steps.append(user)
    split, _, merged = (static_shape(b.var) for b in steps)
    if split is None or merged is None or len(split) != 6:
        return None
    s = split[2]
    axes = steps[1].value.attrs.axes
    if s < 2 or axes is None or [int(a) for a in axes] != [0, 1, 4, 2, 5, 3]:
        return None
    c = cs // (s * s)
    if tuple(split) != (n, c, s, s, h, w) or tuple(merged) != (n, c, h * s, w * s) or c * s * s != cs:
        return None
    return s, [b.var for b in steps]


@mutator
class _ChainRewriter(PyExprMutator):
    """Emits one call_tir per chain at the chain's last binding; the rest becomes dead code."""

    def __init__(self, mod: tvm.IRModule, chains: list[ConvChain], vec: int, registers: int,
                 sparse: str = "auto", threshold: float = DEFAULT_THRESHOLD, compute: str = "float32",
                 half_ends: frozenset = frozenset()) -> None:
        super().__init__(mod)
        self.by_end = {c.end: c for c in chains}
        self.compute, self.half_ends = compute, half_ends
        self.vec, self.registers = vec, registers
        self.sparse, self.threshold = sparse, threshold
        self.kernels: dict[tuple, relax.GlobalVar] = {}
        self.decisions: list[dict] = []

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:  # noqa: D102
        chain = self.by_end.get(binding.var)
        if chain is None:
            super().visit_var_binding_(binding)
            return
        new_value = self._kernel_call(chain)
        new_var = self.builder_.emit(new_value, name_hint=binding.var.name)
        self.set_var_remap(binding.var, new_var)

    def _kernel_call(self, chain: ConvChain) -> relax.Expr:
        n, cin, h, w = static_shape(chain.data)
        cout, _, kh, kw = chain.weight.shape
        def dtype(expr) -> str:
            return self.compute if expr in self.half_ends else "float32"

        resid = chain.repeat_source if chain.residual_repeat > 1 else chain.residual
        spec = ConvSpec(n, cin, h, w, cout, kh, kw, chain.pad, chain.groups, chain.bias is not None,
                        chain.act, chain.residual is not None, slope=chain.slope, compute=self.compute,
                        data_dtype=dtype(chain.data), residual_dtype=dtype(chain.residual), out_dtype=dtype(chain.end))
        plan = choose_kernel(spec, chain.weight, self.vec, self.registers, self.sparse, self.threshold,
                             dense_relative_cost(spec, self.vec, self.registers))
        kept = float(np.count_nonzero(chain.weight)) / max(1, chain.weight.size)
        if plan is not None:
            return self._shuffled(chain, self._sparse_call(chain, spec, plan, kept))
        fused, sched = self._fused_schedule(chain, spec)
        if fused.residual_repeat > 1:
            fused = dataclasses.replace(fused, residual_dtype=dtype(resid))
        wino = self._winograd_call(chain, fused, kept)  # None where direct wins or the build is not float32
        if wino is not None:
            return wino
        self.decisions.append({"kernel": "dense", "cin": cin, "cout": cout, "k": kh, "kept": kept,
                               "oc_tile": sched.oc_tile, "shuffle": fused.shuffle})
        key = (fused, sched)
        if key not in self.kernels:
            name = f"srconv{len(self.kernels)}_{cin}x{cout}_k{kh}{_name_suffix(fused)}"
            func = conv2d_primfunc(fused, sched).with_attr("global_symbol", name)
            self.kernels[key] = self.builder_.add_func(func, name)
        args = [self.visit_expr(chain.data), relax.const(pack_weight(chain.weight, sched.oc_tile, self.compute))]
        if chain.bias is not None:
            args.append(relax.const(chain.bias))
        if chain.alpha is not None:
            args.append(relax.const(chain.alpha))
        if chain.residual is not None:
            repeated = fused.residual_repeat > 1
            args.append(self.visit_expr(chain.repeat_source if repeated else chain.residual))
        call = relax.call_tir(self.kernels[key], args, relax.TensorType(fused.out_shape, fused.out_dtype))
        return call if fused.shuffle == chain.shuffle else self._shuffled(chain, call)

    def _winograd_call(self, chain: ConvChain, fused: ConvSpec, kept: float) -> relax.Expr | None:
        """A call to a Winograd kernel (compiler.winograd) where `choose_conv_kernel` prefers it, else None."""
        m = choose_conv_kernel(fused, self.vec, self.registers)
        if not m:
            return None
        sched = choose_winograd_schedule(fused, m, self.vec, self.registers)
        self.decisions.append({"kernel": "winograd", "m": m, "cin": fused.cin, "cout": fused.cout, "k": fused.kh,
                               "kept": kept, "oc_tile": sched.oc_tile, "shuffle": fused.shuffle})
        key = ("winograd", fused, sched)
        if key not in self.kernels:
            name = f"srwino{len(self.kernels)}_f{m}_{fused.cin}x{fused.cout}{_name_suffix(fused)}"
            self.kernels[key] = self.builder_.add_func(winograd_primfunc(fused, sched).with_attr("global_symbol", name),
                                                       name)
        args = [self.visit_expr(chain.data), relax.const(transform_weight(chain.weight, sched))]
        args += [relax.const(v) for v in (chain.bias, chain.alpha) if v is not None]
        if chain.residual is not None:
            args.append(self.visit_expr(chain.repeat_source if fused.residual_repeat > 1 else chain.residual))
        call = relax.call_tir(self.kernels[key], args, relax.TensorType(fused.out_shape, "float32"))
        return call if fused.shuffle == chain.shuffle else self._shuffled(chain, call)

    def _fused_schedule(self, chain: ConvChain, spec: ConvSpec) -> tuple[ConvSpec, Schedule]:
        """The chain's spec with its PixelShuffle and repeated residual fused, and its tile; the plain spec where
        they cannot be (grouped convs, or no register tile holding whole shuffled rows)."""
        fused = dataclasses.replace(spec, shuffle=chain.shuffle, residual_repeat=chain.residual_repeat)
        if chain.groups == 1 or chain.shuffle == 1:
            with contextlib.suppress(CompilerError):  # no tile holds whole shuffled rows: keep them separate
                return fused, choose_schedule(fused, self.vec, self.registers)
        return spec, choose_schedule(spec, self.vec, self.registers)

    def _shuffled(self, chain: ConvChain, conv: relax.Expr) -> relax.Expr:
        """`conv` followed by the chain's PixelShuffle as separate Relax ops (kernels without a fused one)."""
        s = chain.shuffle
        if s == 1:
            return conv
        n, cs, h, w = static_shape(chain.conv_end)
        c = cs // (s * s)
        split = self.builder_.emit(relax.op.reshape(self.builder_.emit(conv), (n, c, s, s, h, w)))
        moved = self.builder_.emit(relax.op.permute_dims(split, [0, 1, 4, 2, 5, 3]))
        return relax.op.reshape(moved, (n, c, h * s, w * s))


    def _sparse_call(self, chain: ConvChain, spec: ConvSpec, plan, kept: float) -> relax.Expr:
        """A call to a sparse kernel: structure, bias and slopes baked into its code (never shared)."""
        n, cin = spec.n, spec.cin
        name = f"srsparse{len(self.kernels)}_{cin}x{spec.cout}_k{spec.kh}{'_' + spec.act if spec.act != 'none' else ''}"
        func = sparse_conv2d_primfunc(spec, plan, chain.weight, chain.bias, chain.alpha).with_attr("global_symbol", name)
        gvar = self.builder_.add_func(func, name)
        self.kernels[("sparse", len(self.kernels))] = gvar
        self.decisions.append({"kernel": "sparse", "cin": cin, "cout": spec.cout, "k": spec.kh, "kept": kept,
                               "oc_tile": plan.oc_tile, "nvec": plan.nvec,
                               "tile_kept": plan.kept_columns() / (len(plan.tiles) * cin * spec.kh * spec.kw)})
        args = [self.visit_expr(chain.data), relax.const(pack_sparse_weight(chain.weight, plan, spec.compute))]
        if chain.residual is not None:
            args.append(self.visit_expr(chain.residual))
        oh, ow = spec.out_hw
        return relax.call_tir(gvar, args, relax.TensorType((n, spec.cout, oh, ow), spec.out_dtype))


def half_ends(func: relax.Function, chains: list[ConvChain]) -> frozenset:
    """The chain results that only our kernels read (as data or residual): these stay float16 between fp16
    layers. The model's output and anything another op reads (a PixelShuffle kept apart, a repeat, a strided
    conv TVM lowers) stay float32, so every op outside our kernels sees float32 as before."""
    bindings = [b for block in func.body.blocks for b in block.bindings if isinstance(b, relax.VarBinding)]
    uses: dict[relax.Var, list[relax.Var]] = {}
    for binding in bindings:
        for var in relax.analysis.free_vars(binding.value):
            uses.setdefault(var, []).append(binding.var)
    outputs = set(relax.analysis.free_vars(func.body.body))
    members = {v for c in chains for v in c.members}
    return frozenset(c.end for c in chains
                     if c.end not in outputs and uses.get(c.end) and all(u in members for u in uses[c.end]))


def fuse_convs_report(mod: tvm.IRModule, vec: int, registers: int = 32, func_name: str = "main", *,
                      sparse: str = "auto", threshold: float = DEFAULT_THRESHOLD,
                      precision: str = "fp32") -> tuple[tvm.IRModule, list[dict]]:
    """Rewrite the conv chains of `mod[func_name]` into kernel calls; returns (module, one dict per chain).

    Each dict says which kernel the chain got ("dense", "winograd" with its tile "m", or "sparse"), its channels, kernel size, kept
    weight fraction and tile. `sparse`: "auto" (sparse where the cost model says it pays, see
    compiler.sparse.choose_kernel), "dense" (never), "sparse" (every ungrouped conv).
    """
    mod = relax.transform.FoldConstant()(mod)
    chains = find_chains(mod[func_name])
    if not chains:
        return mod, []
    from compiler.targets import PRECISIONS

    if precision not in PRECISIONS:
        raise CompilerError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    compute = PRECISIONS[precision]
    half = half_ends(mod[func_name], chains) if compute != "float32" else frozenset()
    rewriter = _ChainRewriter(mod, chains, vec, registers, sparse, threshold, compute, half)
    new_func = rewriter.visit_expr(mod[func_name])
    new_mod = rewriter.builder_.get()
    new_mod[func_name] = new_func
    new_mod = relax.transform.DeadCodeElimination([func_name])(new_mod)
    return new_mod, rewriter.decisions


def fuse_convs(mod: tvm.IRModule, vec: int, registers: int = 32, func_name: str = "main", *,
               sparse: str = "auto", threshold: float = DEFAULT_THRESHOLD, precision: str = "fp32") -> tuple[tvm.IRModule, int]:
    """Rewrite the conv chains of `mod[func_name]` into kernel calls; returns (module, chains rewritten)."""
    new_mod, decisions = fuse_convs_report(mod, vec, registers, func_name, sparse=sparse, threshold=threshold,
                                           precision=precision)
    return new_mod, len(decisions)
