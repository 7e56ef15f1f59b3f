"""A static latency estimate of a layer on a named CPU: llvm-mca on the assembly the compiler emits.

Why static: without a phone on RPC nothing here can time arm64 code (qemu timings mean nothing), but
the code is known exactly: the layer is built with the same path as the measured table
(`compiler.latency.measure.build_layer`), its assembly taken from the module (`get_source("asm")`),
and llvm-mca-19 predicts the cycles of a loop from the CPU's scheduling model.

Per conv layer (dense or sparse kernel):
- hot loop: the innermost loop (a backward branch with no loop inside) holding the most FMA lanes;
  cycles per iteration from llvm-mca; trip count = the layer's MACs / FMA lanes per iteration;
- epilogue: the code of the loop around the hot loop that is not the hot loop (accumulator set-up,
  bias, activation, residual, stores), once per output tile of the schedule;
- staging: the innermost FMA-free loop that stores vectors (the padded input rows copied into the
  kernel's buffer), per input element;
- cycles / clock, spread over the threads by the kernel's parallel loop (static chunks: the slowest
  core used decides).
`tail` = its 3x3 conv + the 5x5 grouped bicubic conv (as conv layers) + one copy of its output;
`adapter` = one copy of its elements.
Memory (llvm-mca assumes every load hits L1): each kernel's bytes read and written (`traffic_bytes`) at the CPU's
memory bandwidth (cpus.json: a SoC's from its spec sheet, the host's measured by benchmarks/mem_bandwidth.py),
added to the compute time: on this host's measured layer table the sum ranks layers better than the roofline's
max(compute, memory) (benchmarks/latency_estimate.py reports both), as the emitted kernels stage their memory work
(row copy, then multiply-adds, then write-back) rather than hide it behind the multiply-adds. Not modelled: the
cache levels between L1 and memory, thread start-up and synchronisation, frequency scaling, other processes.

Pitfall handled here: LLVM 19's -mcpu=cortex-a76/a77/a78/x1 silently use the Cortex-A57 model
(dispatch width 3, one 128-bit FMA a cycle); cpus.json maps each core to a model that describes it
(A76/A77/A78 -> neoverse-n1, X1 -> neoverse-v1) and `check_model` checks llvm-mca's reported dispatch width.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compiler.errors import CompilerError
from compiler.latency.config import LayerConfig, layer_precision

if TYPE_CHECKING:
    import numpy as np

    from compiler.targets import TargetSpec

MCA = "llvm-mca-19"
CPU_FILE = Path(__file__).with_name("cpus.json")
A57_DISPATCH = 3  # what LLVM 19 silently falls back to for cortex-a76/a77/a78/x1
ITERATIONS = 100
# The estimate's method, in every estimated table's header: a table estimated by another method is re-estimated
# (2: Winograd, fp16 and int8 kernels modelled; multiply-adds by element, all vector stores counted; 3: entries
# record their kernel, Winograd ones their direct twin's estimate, the reference of pruned layers' speed factors;
# 4: + the memory term, bytes read and written at the CPU's bandwidth).
METHOD = 4
# Bytes of one tensor element as the kernels of each precision pass tensors between layers.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


# --- the CPU table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Core:
    """One core type: its llvm-mca model, that model's dispatch width, 128-bit FMA pipes, typical clock."""

    name: str
    mca: str
    dispatch: int
    fma128_per_cycle: int
    ghz: float


@dataclass(frozen=True)
class Cpu:
    """What `--cpu` names: a core (all threads on it at its clock) or a SoC (clusters, fastest cores first)."""

    name: str
    kind: str  # "core" | "soc" | "host"
    cores: tuple[tuple[Core, float], ...]  # (core, GHz) per physical core, fastest first
    triple: str = "aarch64-linux-android"
    phones: str = ""
    mem_gbps: float | None = None  # memory bandwidth for the memory term (None: a bare core names no memory system)
    mem_source: str = ""  # where the figure comes from (cpus.json)

    def used(self, threads: int) -> list[tuple[Core, float]]:
        """The cores `threads` threads run on: the fastest ones (a core name: that core, `threads` times)."""
        if self.kind != "soc":
            return [self.cores[0]] * threads
        return list(self.cores[:max(1, min(threads, len(self.cores)))])

    def label(self) -> str:
        """How reports name the latency: never as measured."""
        return f"estimated (static model of CPU {self.name})"


@functools.lru_cache(maxsize=1)
def cpu_table() -> dict[str, Any]:
    """compiler/latency/cpus.json: the project's named cores and SoCs."""
    return json.loads(CPU_FILE.read_text(encoding="utf-8"))


def cpu_names() -> list[str]:
    """Every name `--cpu` accepts on arm64 (cores, then SoCs)."""
    t = cpu_table()
    return sorted(t["cores"]) + sorted(t["socs"])


def _core(name: str) -> Core:
    c = cpu_table()["cores"][name]
    return Core(name, c["mca"], int(c["dispatch"]), int(c["fma128_per_cycle"]), float(c["ghz"]))


def get_cpu(name: str, target: TargetSpec | None = None) -> Cpu:
    """The named CPU for `target`; unknown names raise CompilerError listing the known ones.

    On the host target the name is `host` (or the LLVM name of this machine's CPU): llvm-mca's model of
    this CPU at the clock /proc/cpuinfo reports, for validating the method against measured tables.
    """
    t = cpu_table()
    if target is not None and not target.cross:
        from tvm.target import codegen

        llvm = str(codegen.llvm_get_system_cpu())
        if name not in ("host", llvm):
            raise CompilerError(f"on target host the cpu is 'host' ({llvm}), not {name!r}")
        core = Core(llvm, llvm, 0, 0, host_ghz())
        gbps, source = host_bandwidth(llvm, target.threads)
        return Cpu(llvm, "host", tuple([(core, core.ghz)] * max(1, target.threads)), target.triple,
                   mem_gbps=gbps, mem_source=source)
    if name in t["cores"]:
        core = _core(name)
        return Cpu(name, "core", ((core, core.ghz),))
    if name in t["socs"]:
        soc = t["socs"][name]
        cores = []
        for cl in soc["clusters"]:
            cores += [(_core(cl["core"]), float(cl["ghz"]))] * int(cl["count"])
        cores.sort(key=lambda c: -c[1] * c[0].fma128_per_cycle)
        mem = soc["memory"]
        return Cpu(name, "soc", tuple(cores), phones=soc.get("phones", ""), mem_gbps=float(mem["gbps"]),
                   mem_source=f"{mem['type']}, {mem['source']}")
    raise CompilerError(f"unknown cpu {name!r}; known: {', '.join(cpu_names())}")


def host_bandwidth(llvm: str, threads: int) -> tuple[float | None, str]:
    """This host's measured memory bandwidth for `threads` threads (cpus.json `hosts`, written by
    benchmarks/mem_bandwidth.py --record): the figure of the most threads measured up to `threads`.
    (None, why) when this CPU was never measured: the estimate then has no memory term, and says so."""
    entry = cpu_table().get("hosts", {}).get(llvm)
    if not entry:
        return None, f"no bandwidth recorded for {llvm} (python benchmarks/mem_bandwidth.py --record)"
    counts = sorted(int(n) for n in entry["gbps"])
    n = max([c for c in counts if c <= threads] or counts[:1])
    return float(entry["gbps"][str(n)]), f"{entry['source']}, {n} thread(s)"


def host_ghz() -> float:
    """This machine's nominal clock (the model name's '@ x.xxGHz', else cpuinfo's MHz)."""
    from compiler.targets import cpu_model

    m = re.search(r"@\s*([\d.]+)\s*GHz", cpu_model())
    if m:
        return float(m.group(1))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    except OSError:
        pass
    return 3.0


# --- llvm-mca --------------------------------------------------------------------------------------


def mca_tool() -> str:
    """The llvm-mca-19 executable; missing -> CompilerError with the package to install."""
    path = shutil.which(MCA)
    if path is None:
        raise CompilerError(f"{MCA} not found: install Debian's llvm-19 (scripts/install-system-deps.sh)")
    return path


@dataclass(frozen=True)
class McaResult:
    """llvm-mca's summary of a block run `iterations` times."""

    iterations: int
    instructions: int
    total_cycles: int
    dispatch_width: int
    block_rthroughput: float

    @property
    def cycles_per_iteration(self) -> float:
        """Steady-state cycles of one pass over the block."""
        return self.total_cycles / self.iterations


def parse_mca(text: str) -> McaResult:
    """The summary lines of llvm-mca's report (Iterations, Instructions, Total Cycles, Dispatch Width, Block RThroughput)."""
    def grab(key: str) -> str:
        m = re.search(rf"^{key}:\s*([\d.]+)\s*$", text, re.M)
        if m is None:
            raise CompilerError(f"llvm-mca report without '{key}'")
        return m.group(1)

    return McaResult(int(grab("Iterations")), int(grab("Instructions")), int(grab("Total Cycles")),
                     int(grab("Dispatch Width")), float(grab("Block RThroughput")))


@functools.lru_cache(maxsize=4096)
def run_mca(body: str, mcpu: str, triple: str) -> McaResult:
    """llvm-mca-19 on `body` (assembly instructions) for `mcpu`; an unknown CPU name is an error, not a fallback."""
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=True) as f:
        f.write(body if body.endswith("\n") else body + "\n")
        f.flush()
        r = subprocess.run([mca_tool(), f"-mtriple={triple}", f"-mcpu={mcpu}", f"-iterations={ITERATIONS}",
                            "-summary-view", "-instruction-info=0", "-resource-pressure=0", f.name],
                           capture_output=True, text=True, timeout=300)
    if "not a recognized processor" in r.stderr or r.returncode != 0:
        raise CompilerError(f"llvm-mca -mcpu={mcpu}: {(r.stderr.strip().splitlines() or ['failed'])[0]}")
    return parse_mca(r.stdout)


def check_model(core: Core, triple: str = "aarch64-linux-android") -> int:
    """llvm-mca's dispatch width for `core`'s model; CompilerError unless it is the table's (and never the A57's)."""
    probe = "fmla v0.4s, v1.4s, v2.4s\n" if triple.startswith("aarch64") else "vfmadd231ps %ymm1, %ymm2, %ymm0\n"
    width = run_mca(probe, core.mca, triple).dispatch_width
    if core.dispatch and width != core.dispatch:
        raise CompilerError(f"llvm-mca's model {core.mca} for {core.name} has dispatch width {width}, "
                            f"the table says {core.dispatch}")
    if triple.startswith("aarch64") and core.name != "cortex-a57" and width == A57_DISPATCH:
        raise CompilerError(f"llvm-mca's model {core.mca} for {core.name} is the Cortex-A57 model")
    return width


# --- assembly -> loops ----------------------------------------------------------------------------

_LABEL = re.compile(r"^([.\w$]+):")
_BRANCH = re.compile(r"^(?:b(?:\.\w+)?|cbn?z|tbn?z|j\w+)\s+(?:.*,\s*)?([.\w$]+)$")
_ARM_FMA = re.compile(r"^fml[as]\s+v\d+\.(\d+)[shd]\b")
_ARM_DOT = re.compile(r"^[su]dot\s+v\d+\.(\d+)s\b")
_ARM_MLAL = re.compile(r"^[su]mlal2?\s+v\d+\.(\d+)s\b")  # the int8 NEON form: int16 x int16 + int32, 1 MAC a lane
_ARM_FMUL = re.compile(r"^fmul\s+v\d+\.(\d+)[shd],\s*v\d+\.\d+[shd],\s*v\d+\.(?:\d+[shd]|[shd]\[\d+\])$")
_X86_FMA = re.compile(r"^vfn?m(?:add|sub)\w*p[sh]\b.*%([xyz])mm\d+\s*$")
_X86_FMUL = re.compile(r"^vmulp[sh]\s.*%([xyz])mm\d+\s*$")
_X86_LANES = {"x": 4, "y": 8, "z": 16}
_ARM_STORE = re.compile(r"^(stp|str|stur)\s+q\d+|^st1\s+\{([^}]*)\}")
_X86_STORE = re.compile(r"^vmov\w*\s+%[xyz]mm\d+,\s*-?\w*\(")
_ARITH = re.compile(r"^(?:f(?:add|sub|mul|ml[as])\s+v|v(?:add|sub|mul|fn?m\w+)p[sh]\s)")
_SHUFFLE = re.compile(r"^(?:zip[12]|uzp[12]|trn[12]|ext|tbl|ins|mov\s+v\d+\.s\[|vperm|vshuf|vunpck|vinsert|vpunpck"
                      r"|vblend|vextract)")


def fma_lanes(ins: str) -> int:
    """Multiply-adds one instruction does (0 for anything else): fmla/fmls .4s = 4, .8h = 8, sdot .4s = 16 (4 lanes x
    4 bytes), smlal .4s = 4, vfmadd on zmm = 16."""
    for rx, per in ((_ARM_FMA, 1), (_ARM_DOT, 4), (_ARM_MLAL, 1)):
        m = rx.match(ins)
        if m:
            return per * int(m.group(1))
    m = _X86_FMA.match(ins)
    if m:
        return _X86_LANES[m.group(1)]
    return 0


def mul_lanes(ins: str) -> int:
    """Products one instruction forms: its FMA lanes, or a vector multiply's lanes (a GEMM's first channel starts
    its accumulators with a multiply, not a multiply-add)."""
    m = _ARM_FMUL.match(ins)
    if m:
        return int(m.group(1))
    m = _X86_FMUL.match(ins)
    if m:
        return _X86_LANES[m.group(1)]
    return fma_lanes(ins)


def vector_stores(ins: str) -> int:
    """Whole vector registers one instruction stores (str q = 1, stp q = 2, st1 {a, b} = 2, vmovups zmm -> mem = 1)."""
    m = _ARM_STORE.match(ins)
    if m:
        if m.group(1):
            return 2 if m.group(1) == "stp" else 1
        return len([r for r in m.group(2).split(",") if r.strip()])
    return int(bool(_X86_STORE.match(ins)))


def vector_store(ins: str) -> bool:
    """A store of a whole vector register (the copy loops' work)."""
    return vector_stores(ins) > 0


def arithmetic(ins: str) -> bool:
    """A vector floating-point add, subtract, multiply or multiply-add (a transform's work, not a copy's)."""
    return bool(_ARITH.match(ins))


def shuffle(ins: str) -> bool:
    """A lane permutation (the Winograd column transform's transposes)."""
    return bool(_SHUFFLE.match(ins))


@dataclass(frozen=True)
class Loop:
    """Lines [start, end] of the assembly: from the back-branch's target label to the branch."""

    start: int
    end: int
    body: tuple[str, ...]  # instructions only

    def fma(self) -> int:
        """FMA lanes per iteration."""
        return sum(fma_lanes(i) for i in self.body)

    def muls(self) -> int:
        """Products (multiply or multiply-add lanes) per iteration."""
        return sum(mul_lanes(i) for i in self.body)

    def stores(self) -> int:
        """Vector registers stored per iteration."""
        return sum(vector_stores(i) for i in self.body)

    def arith(self) -> int:
        """Vector arithmetic instructions per iteration."""
        return sum(arithmetic(i) for i in self.body)

    def shuffles(self) -> int:
        """Lane permutations per iteration."""
        return sum(shuffle(i) for i in self.body)

    def overlaps(self, other: Loop) -> bool:
        """Whether the two loops share assembly lines."""
        return self.start <= other.end and other.start <= self.end

    def contains(self, other: Loop) -> bool:  # noqa: D102
        return self.start <= other.start and other.end <= self.end and (self.start, self.end) != (other.start, other.end)


def _instruction(line: str, comment: str) -> str | None:
    """The instruction on an assembly line (None for labels, directives, comments)."""
    if not line[:1].isspace():
        return None
    s = line.split(comment)[0].strip()
    if not s or s.startswith("."):
        return None
    return " ".join(s.split())


def comment_marker(asm: str) -> str:
    """AArch64 assembly comments with '//' ('#' starts immediates); x86 AT&T with '#'."""
    return "#" if re.search(r"%(?:[re]?[a-z]{2}|[xyz]mm\d+)\b", asm) else "//"


def find_loops(asm: str) -> tuple[list[Loop], list[str]]:
    """Every loop of the assembly (a branch back to a label above it) and the lines."""
    lines = asm.splitlines()
    comment = comment_marker(asm)
    labels = {}
    for i, line in enumerate(lines):
        m = _LABEL.match(line)
        if m:
            labels[m.group(1)] = i
    loops = []
    for j, line in enumerate(lines):
        ins = _instruction(line, comment)
        if ins is None:
            continue
        m = _BRANCH.match(ins)
        if m and labels.get(m.group(1), j + 1) <= j:
            a = labels[m.group(1)]
            body = tuple(x for x in (_instruction(ln, comment) for ln in lines[a:j + 1]) if x)
            loops.append(Loop(a, j, body))
    return loops, lines


def innermost(loops: list[Loop]) -> list[Loop]:
    """Loops with no other loop inside."""
    return [lp for lp in loops if not any(lp.contains(o) for o in loops)]


@dataclass(frozen=True)
class KernelCode:
    """What the estimate needs of one compiled kernel: the hot loop, its epilogue and its copy loop."""

    hot: Loop
    epilogue: tuple[str, ...]
    copy: Loop | None
    parallel: int  # extent of the kernel's parallel loop (1: none)
    fma_loops: tuple[Loop, ...] = ()  # every distinct innermost loop with FMAs (a sparse kernel's column chunks)

    @classmethod
    def from_asm(cls, asm: str, parallel: int = 1) -> KernelCode:
        """Find the hot loop (innermost, most FMA lanes), the rest of its enclosing loop, and the copy loop."""
        loops, _ = find_loops(asm)
        inner = innermost(loops)
        hot_loops = [lp for lp in inner if lp.fma() > 0]
        if not hot_loops:
            raise CompilerError("no loop with vector FMAs in the kernel's assembly")
        hot = max(hot_loops, key=lambda lp: (lp.fma(), -len(lp.body)))
        distinct: list[Loop] = []  # LLVM's rotated copies of one loop overlap: keep the shortest of each
        for lp in sorted(hot_loops, key=lambda lp: lp.end - lp.start):
            if not any(lp.start <= d.end and d.start <= lp.end for d in distinct):
                distinct.append(lp)
        around = [lp for lp in loops if lp.contains(hot)]
        epi: tuple[str, ...] = ()
        if around:
            outer = min(around, key=lambda lp: lp.end - lp.start)
            _, lines = find_loops(asm)
            keep = [ln for i, ln in enumerate(lines[outer.start:outer.end + 1], outer.start)
                    if not hot.start <= i <= hot.end]
            comment = comment_marker(asm)  # once: a search over the whole assembly
            epi = tuple(x for x in (_instruction(ln, comment) for ln in keep) if x)
        copies = [lp for lp in inner if lp.fma() == 0 and lp.stores() > 0]
        copy = max(copies, key=lambda lp: lp.stores() / len(lp.body)) if copies else None
        return cls(hot, epi, copy, max(1, parallel), tuple(sorted(distinct, key=lambda lp: lp.start)))


# --- a layer -> cycles -> milliseconds ------------------------------------------------------------


@dataclass
class LayerEstimate:
    """One layer's estimate: milliseconds and how they were made up (cycles of the slowest thread)."""

    ms: float
    parts: dict[str, float] = field(default_factory=dict)  # cycles per part, whole layer, one core
    detail: dict[str, Any] = field(default_factory=dict)
    core_parts: dict[str, dict[str, float]] = field(default_factory=dict)  # cycles per part by core type

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"ms": self.ms, "parts": self.parts, "detail": self.detail}


def _kernel_asm(built: Any) -> str:
    """The assembly of a built layer (compiler.latency.runners.BuiltLayer) or of a TVM executable."""
    exe = getattr(built, "executable", built)
    mod = exe.mod if hasattr(exe, "mod") else exe
    try:
        return mod.inspect_source("asm")
    except Exception:  # noqa: BLE001  (older TVM spellings)
        return mod.get_source("asm")


def _parallel_extent(func: Any) -> int:
    m = re.search(r"T\.parallel\((\d+)\)", func.script())
    return int(m.group(1)) if m else 1


def kernel_code(cfg: LayerConfig, target: TargetSpec,
                weight: np.ndarray | None = None) -> tuple[KernelCode, Any, float | None]:
    """Build the conv `cfg` for `target` as the table does, with the direct (or sparse) kernel, and parse its assembly.

    Returns (code, the dense schedule, and for a sparse kernel the multiply-adds its plan executes, else None).
    Layers the compiler gives to Winograd are estimated from the Winograd kernel (`Estimator._winograd`); this is the
    direct kernel's code, which the rewrite emits for every other dense conv (and the fp16 target for all of them).
    """
    from compiler.kernels import choose_schedule, conv2d_primfunc
    from compiler.latency.measure import build_layer, conv_spec
    from compiler.winograd import winograd_mode

    if cfg.op != "conv":
        raise CompilerError(f"kernel_code takes conv layers, got {cfg.key()}")
    with winograd_mode("direct"):
        built = build_layer(cfg, target, weight=weight)
    asm = _kernel_asm(built)
    spec = conv_spec(cfg, target)
    sched = choose_schedule(spec, target.vec, target.registers)
    # The TIR of a built layer is not kept: the parallel extent is the dense kernel's (sparse kernels
    # split the same output rows).
    parallel = _parallel_extent(conv2d_primfunc(spec, sched))
    executed = None
    if built.extra.get("sparse"):
        from compiler import sparse

        plan = sparse.choose_kernel(spec, built.extra["weight"], target.vec, target.registers)
        oh, ow = cfg.out_hw
        executed = float(plan.kept_columns() * plan.oc_tile * oh * math.ceil(ow / plan.w_tile) * plan.w_tile)
    return KernelCode.from_asm(asm, parallel), sched, executed


def _compile_asm(func: Any, target: TargetSpec, what: str) -> str:
    """The assembly of one PrimFunc compiled for `target` (a Winograd or int8 kernel built outside the table's path)."""
    import tvm

    try:
        exe = tvm.compile(tvm.IRModule({"layer": func.with_attr("global_symbol", "layer")}), target=target.tvm_target())
    except Exception as exc:  # noqa: BLE001
        raise CompilerError(f"cannot build {what}: {str(exc).strip().splitlines()[0]}") from exc
    return _kernel_asm(exe)


@dataclass(frozen=True)
class Part:
    """One piece of straight-line code or loop body and how many times the layer runs it."""

    name: str
    body: tuple[str, ...]
    count: float


def winograd_parts(asm: str, spec: Any, sched: Any) -> list[Part]:
    """The parts of a Winograd F(m) kernel (compiler.winograd._build) in its assembly, each with its execution count
    from the schedule:

    - `gemm`: the innermost loop with the most products (oc_tile x nvec accumulators over a chunk of input channels);
      count = the batched GEMM's products (computed tiles x alpha^2 x cin x cout) / products per iteration;
    - `output`: the innermost loop in the GEMM's enclosing (channel-tile) loop that stores: A^T M A and the fused
      write-back; count = vector stores of the output (computed tiles x cout x m^2 / vec) / stores per iteration
      (falls back to the enclosing loop's code once per channel tile where LLVM unrolled it);
    - `input_cols` / `input_rows`: innermost loops of the block loop outside the channel-tile loop that compute and
      store (with lane shuffles: the column transform, else the row transform); counts from the vectors each
      transform stores (blocks x cin x alpha^2 x nvec, and blocks x cin x alpha x padded row vectors);
    - `input_rest`: the channel loop's own code outside its inner loops (address arithmetic, prefetches, what LLVM
      unrolled: on x86 the whole row transform), once per block and input channel;
    - the copy of the padded input rows (`fill`) is the caller's, at the copy loop's rate.
    """
    loops, lines = find_loops(asm)
    inner = innermost(loops)
    comment = comment_marker(asm)
    m, a, vec, nv, ot, wt = sched.m, sched.alpha, sched.vec, sched.nvec, sched.oc_tile, sched.w_tile
    oh, ow = spec.out_hw
    blocks = math.ceil(oh / m) * math.ceil(math.ceil(ow / m) / wt)
    cin, cout = spec.cin, spec.cout
    nvc = (wt * m + vec) // vec
    gemm = [lp for lp in inner if lp.muls() > 0]
    if not gemm:
        raise CompilerError("no loop with vector multiply-adds in the Winograd kernel's assembly")
    hot = max(gemm, key=lambda lp: (lp.muls(), -len(lp.body)))
    parts = [Part("gemm", hot.body, blocks * wt * a * a * cin * cout / hot.muls())]
    around = sorted((lp for lp in loops if lp.contains(hot)), key=lambda lp: lp.end - lp.start)
    if not around:
        return parts
    tile_loop = around[0]
    outs = [lp for lp in inner if tile_loop.contains(lp) and not lp.overlaps(hot) and lp.stores() > 0]
    if outs:
        out = max(outs, key=lambda lp: (lp.stores(), len(lp.body)))
        parts.append(Part("output", out.body, blocks * wt * cout * m * m / vec / out.stores()))
    else:
        keep = [ln for i, ln in enumerate(lines[tile_loop.start:tile_loop.end + 1], tile_loop.start)
                if not hot.start <= i <= hot.end]
        body = tuple(x for x in (_instruction(ln, comment) for ln in keep) if x)
        parts.append(Part("output", body, blocks * cout / ot))
    block_loop = next((lp for lp in around[1:] if lp.start < tile_loop.start or lp.end > tile_loop.end), None)
    if block_loop is None:
        return parts
    trans = [lp for lp in inner if block_loop.contains(lp) and not lp.overlaps(tile_loop)
             and lp.arith() > 0 and lp.stores() > 0]
    cols = [lp for lp in trans if lp.shuffles() > 0]
    rows = [lp for lp in trans if lp.shuffles() == 0]
    if cols:
        c = max(cols, key=lambda lp: lp.stores())
        parts.append(Part("input_cols", c.body, blocks * cin * a * a * nv / c.stores()))
    if rows:
        r = max(rows, key=lambda lp: lp.stores())
        parts.append(Part("input_rows", r.body, blocks * cin * a * nvc / r.stores()))
    chan = [lp for lp in loops if block_loop.contains(lp) and not lp.overlaps(tile_loop) and trans
            and all(lp.contains(t) for t in trans)]
    if chan:  # the channel loop's own code, once per channel and block (with the unrolled loops: x86's row transform)
        c_loop = min(chan, key=lambda lp: lp.end - lp.start)
        nested = [lp for lp in loops if c_loop.contains(lp)]
        keep = [ln for i, ln in enumerate(lines[c_loop.start:c_loop.end + 1], c_loop.start)
                if not any(lp.start <= i <= lp.end for lp in nested)]
        own = tuple(x for x in (_instruction(ln, comment) for ln in keep) if x)
        parts.append(Part("input_rest", own, blocks * cin))
    return parts


def _cycles(code: KernelCode, core: Core, triple: str, macs: float, tiles: int, copy_elems: float,
            lanes: int) -> dict[str, float]:
    """A dense kernel's cycles on one core: hot loop x (MACs / its FMA lanes), epilogue x tiles, copy x elements."""
    hot = run_mca("\n".join(code.hot.body), core.mca, triple).cycles_per_iteration
    parts = {"hot": hot * macs / code.hot.fma()}
    if code.epilogue:
        parts["epilogue"] = run_mca("\n".join(code.epilogue), core.mca, triple).cycles_per_iteration * tiles
    parts["copy"] = copy_elems * copy_cycles_per_element(code, core, triple, lanes)
    return parts


def copy_cycles_per_element(code: KernelCode, core: Core, triple: str, lanes: int = 4) -> float:
    """Cycles per element copied by the kernel's copy loop (`lanes` elements a vector store; none found: one store a
    cycle).

    Capped at one cycle an element: on small rows LLVM unrolls the row copy, and the loop found is then an edge
    loop that is not what moves most of the data.
    """
    if code.copy is None:
        return 1.0 / lanes
    c = run_mca("\n".join(code.copy.body), core.mca, triple).cycles_per_iteration
    return min(1.0, c / (code.copy.stores() * lanes))


def traffic_bytes(cfg: LayerConfig, precision: str = "fp32") -> float:
    """Bytes a layer's kernels read and write in memory (`precision`'s tensor elements, ELEMENT_BYTES): the memory
    term's numerator.

    conv: its input, output and residual (`LayerConfig.elements`) and its kept weights; adapter: the channels it
    keeps read (a slice reads only those, a zero pad all of its input) and its output written; tail: its conv, the
    5x5 bicubic conv of the 3-channel image, and the PixelShuffle's copy of the output (read and written).
    """
    eb = ELEMENT_BYTES[precision]
    if cfg.op == "adapter":
        return float(eb * cfg.h * cfg.w * (min(cfg.cin, cfg.cout) + cfg.cout))
    if cfg.op == "tail":
        out = 3 * cfg.scale * cfg.scale
        return sum(traffic_bytes(c, precision) for c in tail_convs(cfg)) + float(eb * 2 * out * cfg.h * cfg.w)
    weights = cfg.cout * (cfg.cin // cfg.groups) * cfg.k * cfg.k * (1.0 - cfg.ratio)
    return float(eb * (cfg.elements() + weights))


def tail_convs(tail: LayerConfig) -> tuple[LayerConfig, LayerConfig]:
    """The tail's two convs as the compiler emits them: its 3x3 conv to 3 x scale^2 channels, and the fixed bicubic
    skip (5x5, grouped by colour, no bias) of the 3-channel image."""
    out = 3 * tail.scale * tail.scale
    return (LayerConfig("conv", tail.cin, out, tail.h, tail.w),
            LayerConfig("conv", 3, out, tail.h, tail.w, k=5, groups=3, pad=2, bias=False))


def _spread(parallel: int, used: list[tuple[Core, float]], per_core: dict[str, float]) -> float:
    """Milliseconds when the parallel loop's `parallel` chunks are split statically over the used cores.

    Each thread gets ceil(parallel / threads) chunks; the slowest core used decides. No parallel loop:
    one thread on the fastest core.
    """
    if parallel <= 1:
        core, ghz = used[0]
        return per_core[core.name] / (ghz * 1e6)
    share = math.ceil(parallel / len(used)) / parallel
    return max(per_core[core.name] * share / (ghz * 1e6) for core, ghz in used)


class Estimator:
    """Layer estimates for one target and CPU, cached by layer key (a key's code is fixed)."""

    def __init__(self, target: TargetSpec, cpu: Cpu, threads: int | None = None) -> None:
        self.target = target
        self.cpu = cpu
        self.threads = threads or target.threads
        self.used = cpu.used(self.threads)
        self.triple = target.triple
        for core in {c.name: c for c, _ in self.used}.values():
            check_model(core, self.triple)
        self._cache: dict[str, LayerEstimate] = {}
        self._twins: dict[str, LayerEstimate] = {}  # direct kernels of pruned layers' dense twins
        self._copy: dict[str, float] | None = None

    def describe(self) -> dict[str, Any]:
        """Plain data for table headers and reports."""
        cores = [{"core": c.name, "mca": c.mca, "ghz": g} for c, g in self.used]
        memory = {"gbps": self.cpu.mem_gbps, "source": self.cpu.mem_source} if self.cpu.mem_gbps else None
        return {"cpu": self.cpu.name, "kind": self.cpu.kind, "threads": self.threads, "cores": cores,
                "label": self.cpu.label(), "mca": MCA, "method": METHOD, "memory": memory}

    def memory_ms(self, nbytes: float) -> float:
        """Milliseconds to move `nbytes` at the CPU's memory bandwidth (0 where none is known: a bare core)."""
        return nbytes / self.cpu.mem_gbps / 1e6 if self.cpu.mem_gbps else 0.0

    def _with_memory(self, est: LayerEstimate, nbytes: float) -> LayerEstimate:
        """`est` (compute) + the memory term of `nbytes`: added, not overlapped (see the module's docstring)."""
        mem = self.memory_ms(nbytes)
        detail = {**est.detail, "compute_ms": est.ms, "memory_ms": mem, "bytes": nbytes}
        return LayerEstimate(est.ms + mem, est.parts, detail, est.core_parts)

    def layer(self, cfg: LayerConfig, weight: np.ndarray | None = None) -> LayerEstimate:
        """The estimate of one layer (conv dense or pruned, tail, adapter)."""
        key = cfg.key()
        if key not in self._cache:
            self._cache[key] = self._layer(cfg, weight)
        return self._cache[key]

    def _parts_estimate(self, parts: list[Part], parallel: int, extra: dict[str, dict[str, float]] | None = None,
                        detail: dict[str, Any] | None = None) -> LayerEstimate:
        """Cycles of each part (llvm-mca per pass x its count) on every core used, spread over the threads."""
        core_parts = {}
        for core, _ in self.used:
            cyc = {}
            for part in parts:
                if part.body and part.count > 0:
                    per = run_mca("\n".join(part.body), core.mca, self.triple).cycles_per_iteration
                    cyc[part.name] = cyc.get(part.name, 0.0) + per * part.count
            core_parts[core.name] = {**cyc, **((extra or {}).get(core.name) or {})}
        ms = _spread(parallel, self.used, {n: sum(p.values()) for n, p in core_parts.items()})
        return LayerEstimate(ms, core_parts[self.used[0][0].name], detail or {}, core_parts)

    def _winograd(self, cfg: LayerConfig, spec: Any, m: int) -> LayerEstimate:
        """The Winograd F(m) kernel the compiler emits for this layer: GEMM, output and input transforms from its own
        assembly (`winograd_parts`), the copy of the padded input rows at the copy loop's rate."""
        from compiler.winograd import choose_winograd_schedule, winograd_primfunc

        sched = choose_winograd_schedule(spec, m, self.target.vec, self.target.registers)
        func = winograd_primfunc(spec, sched)
        asm = _compile_asm(func, self.target, cfg.key())
        parts = winograd_parts(asm, spec, sched)
        code = KernelCode.from_asm(asm, 1)
        oh, ow = spec.out_hw
        blocks = math.ceil(oh / m) * math.ceil(math.ceil(ow / m) / sched.w_tile)
        fill = blocks * spec.cin * sched.alpha * (sched.w_tile * m + sched.vec)  # padded input rows copied
        extra = {c.name: {"fill": fill * copy_cycles_per_element(code, c, self.triple, self.target.vec)}
                 for c, _ in self.used}
        detail = {"kernel": f"winograd{m}", "parallel": _parallel_extent(func),
                  "parts": {p.name: {"instructions": len(p.body), "count": p.count} for p in parts},
                  "gemm_products": sum(mul_lanes(i) for i in parts[0].body)}
        return self._parts_estimate(parts, detail["parallel"], extra, detail)

    def _int8(self, cfg: LayerConfig, weight: np.ndarray | None) -> LayerEstimate:
        """An int8 conv (precision int8): the int8 kernel of compiler.int8 for the target's dot form (sdot with
        +dotprod, the NEON smlal form without), on `weight` (int8, dense or block-diagonal) or a seeded one."""
        from compiler.int8.isa import choose_isa
        from compiler.int8.kernel import build_kernel

        layer = int8_layer(cfg, weight)
        k = build_kernel(layer, 1, cfg.h, cfg.w, choose_isa(self.target))
        return self.int8_kernel(k)

    def int8_kernel(self, kernel: Any) -> LayerEstimate:
        """One built int8 kernel (compiler.int8.kernel.Int8Kernel): its dot-product loops x the products its plan
        executes, the row copy into its window at the copy loop's rate (one byte an element)."""
        from compiler.int8.isa import kernel_target

        spec, plan, isa = kernel.spec, kernel.plan, kernel.isa
        asm = _compile_asm(kernel.func, kernel_target(self.target, isa), f"int8 conv {spec}")
        code = KernelCode.from_asm(asm, _parallel_extent(kernel.func))
        oh, ow = spec.out_hw
        wt = isa.vec * plan.nvec
        cols = plan.kept_columns() if plan.sparse else len(plan.tiles[0]) * (spec.cout // plan.oc_tile)
        executed = float(oh * math.ceil(ow / wt) * wt * 4 * plan.oc_tile * cols)
        lanes = sum(lp.fma() for lp in code.fma_loops)
        parts = [Part(f"dot{i}", lp.body, executed / lanes) for i, lp in enumerate(code.fma_loops)]
        copy = float(spec.groups4 * 4 * (oh + spec.kh - 1) * (ow + 2 * spec.pad))
        extra = {c.name: {"copy": copy * copy_cycles_per_element(code, c, self.triple, 16)} for c, _ in self.used}
        detail = {"kernel": f"int8 {isa.name}", "dot_loops": len(code.fma_loops), "dot_macs": lanes,
                  "executed_macs": executed, "sparse": plan.sparse, "parallel": code.parallel}
        est = self._parts_estimate(parts, code.parallel, extra, detail)
        est.parts = {"hot": sum(v for k, v in est.parts.items() if k.startswith("dot")), "copy": est.parts["copy"]}
        return self._with_memory(est, int8_traffic_bytes(spec))

    def row_kernel(self, func: Any, elements: float, what: str) -> LayerEstimate:
        """An elementwise or scalar per-pixel kernel (the int8 c-lib's quantise and bicubic-skip kernels): its
        busiest innermost loop x (output elements / elements it stores an iteration)."""
        asm = _compile_asm(func, self.target, what)
        loops, _ = find_loops(asm)
        inner = [lp for lp in innermost(loops) if lp.stores() or any(_SCALAR_STORE.match(i) for i in lp.body)]
        if not inner:
            raise CompilerError(f"no storing loop in the assembly of {what}")
        lp = max(inner, key=lambda x: len(x.body))
        per = sum(vector_stores(i) * self.target.vec + bool(_SCALAR_STORE.match(i)) for i in lp.body)
        return self._parts_estimate([Part("loop", lp.body, elements / per)], _parallel_extent(func),
                                    detail={"loop_instructions": len(lp.body), "elements_per_iteration": per})

    def _conv(self, cfg: LayerConfig, weight: np.ndarray | None) -> LayerEstimate:
        from compiler.latency.measure import conv_spec
        from compiler.winograd import choose_conv_kernel

        if layer_precision(cfg, self.target) == "int8":
            return self._int8(cfg, weight)
        spec = conv_spec(cfg, self.target)
        if cfg.scheme == "dense" and spec.compute == "float32":
            m = choose_conv_kernel(spec, self.target.vec, self.target.registers)  # the rewrite's choice
            if m:
                return self._winograd(cfg, spec, m)
        return self._direct(cfg, weight)

    def _direct(self, cfg: LayerConfig, weight: np.ndarray | None = None) -> LayerEstimate:
        """The direct kernel (or the sparse kernel of a pruned layer), not cached: a sparse kernel's write-back and
        copy are those of the direct kernel of its dense twin, whichever kernel the twin itself gets."""
        code, sched, executed = kernel_code(cfg, self.target, weight)
        if executed is not None:
            return self._sparse(cfg, code, executed)
        oh, ow = cfg.out_hw
        tiles = oh * math.ceil(ow / (sched.vec * sched.nvec)) * math.ceil(cfg.cout / sched.oc_tile)
        macs = float(cfg.macs())
        core_parts = {core.name: _cycles(code, core, self.triple, macs, tiles, cfg.cin * cfg.h * cfg.w, self.target.vec)
                      for core, _ in self.used}
        ms = _spread(code.parallel, self.used, {n: sum(p.values()) for n, p in core_parts.items()})
        detail = {"kernel": "direct", "hot_fma_lanes": code.hot.fma(), "hot_instructions": len(code.hot.body),
                  "epilogue_instructions": len(code.epilogue), "tiles": tiles, "parallel": code.parallel}
        return LayerEstimate(ms, core_parts[self.used[0][0].name], detail, core_parts)

    def direct(self, cfg: LayerConfig) -> LayerEstimate:
        """The direct kernel's estimate of dense conv `cfg` (cached): what a Winograd entry records as `direct_ms`,
        the reference of the sparse speed factors (compiler.latency.predict)."""
        if cfg.key() not in self._twins:
            self._twins[cfg.key()] = self._with_memory(self._direct(cfg),
                                                       traffic_bytes(cfg, layer_precision(cfg, self.target)))
        return self._twins[cfg.key()]

    def _sparse(self, cfg: LayerConfig, code: KernelCode, executed: float) -> LayerEstimate:
        """A sparse kernel: every column-chunk loop runs along the row the same number of times
        (executed MACs / FMA lanes of all chunk loops); its write-back and input copy are the dense
        kernel's (the same WriteBack and row bands), so they come from the dense twin's estimate."""
        from dataclasses import replace as _replace

        twin = self.direct(_replace(cfg, scheme="dense", ratio=0.0, block=(0, 0)))
        lanes = sum(lp.fma() for lp in code.fma_loops)
        trips = executed / lanes
        core_parts = {}
        for core, _ in self.used:
            fma = sum(run_mca("\n".join(lp.body), core.mca, self.triple).cycles_per_iteration
                      for lp in code.fma_loops) * trips
            rest = {k: v for k, v in twin.core_parts[core.name].items() if k != "hot"}
            core_parts[core.name] = {"hot": fma, **rest}
        ms = _spread(code.parallel, self.used, {n: sum(p.values()) for n, p in core_parts.items()})
        detail = {"fma_loops": len(code.fma_loops), "fma_lanes": lanes, "executed_macs": executed,
                  "parallel": code.parallel}
        return LayerEstimate(ms, core_parts[self.used[0][0].name], detail, core_parts)

    def _copy_ms(self, elements: float) -> tuple[float, float]:
        """(ms, cycles) of copying `elements` floats, at the copy rate of a reference conv kernel's copy loop."""
        if self._copy is None:
            ref = LayerConfig("conv", 8, 8, 16, 64)
            code, _, _ = kernel_code(ref, self.target)
            self._copy = {c.name: copy_cycles_per_element(code, c, self.triple, self.target.vec) for c, _ in self.used}
        per_core = {name: elements * rate for name, rate in self._copy.items()}
        return _spread(64, self.used, per_core), max(per_core.values())

    def _layer(self, cfg: LayerConfig, weight: np.ndarray | None) -> LayerEstimate:
        precision = layer_precision(cfg, self.target)
        if cfg.op == "conv":
            est = self._conv(cfg, weight)  # an int8 kernel's estimate has its memory term (`int8_kernel`)
            return est if precision == "int8" else self._with_memory(est, traffic_bytes(cfg, precision))
        if cfg.op == "adapter" and layer_precision(cfg, self.target) == "int8":
            # the int8 kernels read a residual of another width sliced or zero-padded (Int8ConvSpec.res_channels)
            return LayerEstimate(0.0, {}, {"fused": "into the next int8 kernel's residual read"})
        if cfg.op == "tail" and layer_precision(cfg, self.target) == "int8":
            return self._int8_tail(cfg)
        if cfg.op == "adapter":
            ms, cyc = self._copy_ms(cfg.elements())
            return self._with_memory(LayerEstimate(ms, {"copy": cyc}, {"elements": cfg.elements()}),
                                     traffic_bytes(cfg, precision))
        # tail: tail conv + grouped 5x5 bicubic conv + the PixelShuffle copy of the output (each with its memory)
        out = 3 * cfg.scale * cfg.scale
        conv, up = (self.layer(c) for c in tail_convs(cfg))
        shuffle_memory = self.memory_ms(ELEMENT_BYTES[precision] * 2 * out * cfg.h * cfg.w)
        shuffle = self._copy_ms(out * cfg.h * cfg.w)[0] + shuffle_memory
        memory = conv.detail.get("memory_ms", 0.0) + up.detail.get("memory_ms", 0.0) + shuffle_memory
        return LayerEstimate(conv.ms + up.ms + shuffle, {"tail_conv": conv.ms, "bicubic_conv": up.ms,
                                                         "shuffle": shuffle},
                             {"parts_unit": "ms", "memory_ms": memory, "bytes": traffic_bytes(cfg, precision)})


    def _int8_tail(self, cfg: LayerConfig) -> LayerEstimate:
        """The int8 tail: the tail conv with the PixelShuffle, the float bicubic skip and the clamp fused (the int8
        c-lib's last kernel), plus its scalar bicubic-skip kernel on the uint8 image."""
        from compiler.int8.isa import choose_isa
        from compiler.int8.kernel import build_kernel
        from compiler.int8.network import skip_primfunc

        out = 3 * cfg.scale * cfg.scale
        layer = int8_layer(LayerConfig("conv", cfg.cin, out, cfg.h, cfg.w, precision="int8"), None, tail=True)
        k = build_kernel(layer, 1, cfg.h, cfg.w, choose_isa(self.target), tail_shuffle=cfg.scale, clamp=True,
                         fskip=True)
        conv = self.int8_kernel(k)
        skip = self.row_kernel(skip_primfunc((1, 3, cfg.h, cfg.w), (out, 1, 5, 5)), out * cfg.h * cfg.w,
                               "the int8 bicubic skip")
        return LayerEstimate(conv.ms + skip.ms, {"tail_conv": conv.ms, "bicubic_skip": skip.ms}, {"parts_unit": "ms"})


_SCALAR_STORE = re.compile(r"^(?:str|stur)\s+s\d+|^vmovss\s+%xmm\d+,\s*-?\w*\(")


def int8_traffic_bytes(spec: Any) -> float:
    """Bytes an int8 conv kernel (compiler.int8's Int8ConvSpec) reads and writes: uint8 input, residual and weights,
    its output (float32 from the tail, which also reads its float32 bicubic skip; else uint8)."""
    oh, ow = spec.out_hw
    out = spec.cout * oh * ow
    res = (spec.res_channels or spec.cout) * oh * ow if spec.residual else 0
    weights = spec.cout * spec.cin * spec.kh * spec.kw
    return float(spec.cin * spec.h * spec.w + res + weights + (4 * out * (1 + spec.fskip) if spec.tail else out))


def int8_layer(cfg: LayerConfig, weight: np.ndarray | None, tail: bool = False) -> Any:
    """The QConv the int8 kernels take for `cfg`: `weight` (int8 (O, I/g, k, k) or its dense form), or seeded int8
    weights with the pruned fraction zeroed (a grouped conv as its block-diagonal dense equivalent, as srprune's
    quantised models hand it over). The scales are placeholders: the code does not depend on their values."""
    import numpy as np

    from compiler.quant_spec import QConv, QParams, block_diagonal

    if cfg.scheme != "dense" and weight is None:
        raise CompilerError(f"a pruned int8 layer needs its weight: {cfg.key()}")
    if weight is None:
        rng = np.random.default_rng(0)
        weight = rng.integers(-127, 128, (cfg.cout, cfg.cin // cfg.groups, cfg.k, cfg.k)).astype(np.int8)
    weight = np.asarray(weight)
    if weight.dtype != np.int8:
        scale = max(float(np.abs(weight).max()), 1e-12) / 127
        weight = np.round(weight / scale).astype(np.int8)
    if weight.shape[1] != cfg.cin:
        weight = block_diagonal(weight, cfg.cin // weight.shape[1])
    q = QParams(1 / 255, 128)
    return QConv(weight, np.full(cfg.cout, 0.01, np.float32), np.zeros(cfg.cout, np.int32), q, None if tail else q,
                 cfg.act, np.full(cfg.cout, 0.25, np.float32) if cfg.act == "prelu" else None, cfg.pad,
                 q if cfg.residual else None)


# --- a table of estimates -------------------------------------------------------------------------

ESTIMATE_SOURCE = "estimate"


def estimate_header(estimator: Estimator) -> dict[str, Any]:
    """Header fields that mark a table as estimated (read by `table_label`)."""
    return {"source": ESTIMATE_SOURCE, "estimate": estimator.describe()}


def table_label(header: dict[str, Any]) -> str:
    """How a table's latencies must be named: 'measured', or 'estimated (static model of CPU X)'."""
    if header.get("source") == ESTIMATE_SOURCE:
        return str((header.get("estimate") or {}).get("label") or "estimated (static model)")
    return "measured"


def estimate_into(table: Any, configs: list[LayerConfig], estimator: Estimator, *, progress: bool = True,
                  weight_for: Any = None, chunk: int = 16) -> int:
    """Estimate every configuration of `configs` the table lacks (saved every `chunk`); returns how many.

    Each entry's one 'sample' is the estimate; the table's header says it is one (`estimate_header`).
    """
    from srcommon.progress import progress_bar

    todo = table.missing(configs)
    bar = progress_bar(total=len(todo), desc=f"estimate {estimator.cpu.name}", unit="layer", disable=not progress)
    try:
        for i, cfg in enumerate(todo, 1):
            weight = weight_for(cfg) if weight_for is not None and cfg.scheme != "dense" else None
            est = estimator.layer(cfg, weight)
            kernel = str(est.detail.get("kernel", "sparse" if cfg.scheme != "dense" else ""))
            direct = estimator.direct(cfg).ms if cfg.scheme == "dense" and kernel.startswith("winograd") else None
            table.add(cfg, [est.ms], kernel=kernel, direct_ms=direct)
            bar.update(1)
            if i % chunk == 0:
                table.save()
    finally:
        bar.close()
    if todo:
        table.save()
    return len(todo)
