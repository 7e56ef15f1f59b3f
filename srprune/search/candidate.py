"""A search candidate: a genome plus a pruning choice and a precision per layer, and the two numbers the search
scores it by.

Accuracy: PSNR-Y on the validation images of the genome's network extracted from the supernet's shared
weights, deployed (re-parameterised), with each pruned layer's magnitude mask applied (no training:
the search compares candidates, fine-tuning comes once, for the winner) and, when some layers are int8 or
fp16, those layers simulated (srprune.quant.plan.PlanNet: fake quantisation, ranges calibrated once per
candidate on the search's fixed calibration batches). Latency: the target's latency model (layer table +
calibration) summed over the deployed layers with their schemes and precisions.

Layer names are module names of the deployed GenomeNet ("cells.0.c1"), the names both
srprune.pruning and srprune.latency use. Prunable: every ungrouped conv inside a cell (the head's
3 input channels and the tail before PixelShuffle stay dense; depthwise convs have no sparse kernel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from compiler.latency.config import LayerConfig
from srcommon.training import Hooks, LoopSettings, TrainLoop
from srprune.latency import latency_prune, named_genome_layers
from supernet.space import Genome

PATTERN_MIN_RATIO = 5 / 9  # the compiled pattern kernels keep 4 of 9 taps (plus whole-kernel removal)


@dataclass
class Candidate:
    """genome + {layer: {"scheme", "ratio", "block"}} for its pruned layers (absent = dense) + {layer: precision}
    for its layers in another arithmetic than fp32 (absent = fp32; srprune.quant.plan says which may be)."""

    genome: Genome
    prune: dict[str, dict[str, Any]] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.precision = {k: v for k, v in self.precision.items() if v != "fp32"}

    def to_dict(self) -> dict[str, Any]:
        """Plain data (RUN/search/chosen.json); "precision" only when some layer is not fp32, so an fp32
        candidate writes (and is recognised as already scored) exactly as before precisions were searched."""
        out = {"genome": self.genome.to_dict(), "prune": self.prune}
        if self.precision:
            out["precision"] = dict(self.precision)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Candidate":
        """Inverse of to_dict (a file without "precision": every layer fp32)."""
        return cls(Genome.from_dict(data["genome"]), {k: dict(v) for k, v in data.get("prune", {}).items()},
                   {str(k): str(v) for k, v in (data.get("precision") or {}).items()})


def scheme_name(scheme: str, block: Sequence[int] | None = None) -> str:
    """'dense', 'pattern' or 'block4x8': one label per searchable choice."""
    return f"block{block[0]}x{block[1]}" if scheme == "block" else scheme


def parse_scheme(name: str) -> tuple[str, tuple[int, int] | None]:
    """Inverse of scheme_name."""
    if name.startswith("block"):
        rows, cols = name[5:].split("x")
        return "block", (int(rows), int(cols))
    return name, None


def searchable_layers(genome: Genome, out_hw: tuple[int, int]) -> dict[str, LayerConfig]:
    """The layers of `genome` a scheme may prune, in execution order."""
    return {name: c for name, c in named_genome_layers(genome, out_hw)
            if c.op == "conv" and c.groups == 1 and name != "head"}


def fits(cfg: LayerConfig, scheme: str, block: tuple[int, int] | None) -> bool:
    """Whether `scheme` (and block size) applies to the layer: a block must tile its weight matrix."""
    if scheme == "dense":
        return True
    if scheme == "pattern":
        return cfg.k == 3
    rows, cols = block
    return cfg.cout % rows == 0 and (cfg.cin * cfg.k * cfg.k) % cols == 0


def scheme_ratios(scheme: str, ratios: list[float]) -> list[float]:
    """The ratios a layer of `scheme` may take from the search's `ratios`: a pattern layer's at least
    PATTERN_MIN_RATIO (what its kernels keep), so stage 2's pattern ratio (`layer_prune` at scheme_ratio) is one of
    stage 3's choices and the table times each of them."""
    if scheme == "pattern":
        return sorted({float(max(r, PATTERN_MIN_RATIO)) for r in ratios})
    return list(ratios)


def layer_prune(scheme: str, block: tuple[int, int] | None, ratio: float) -> dict[str, Any]:
    """The per-layer entry of Candidate.prune."""
    if scheme == "block":
        return {"scheme": "block", "ratio": float(ratio), "block": list(block)}
    return {"scheme": scheme, "ratio": float(max(ratio, PATTERN_MIN_RATIO)) if scheme == "pattern" else float(ratio)}


def pruning_spec(prune: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The srprune.pruning spec of a candidate (patterns keep 4 taps, as the compiled kernels assume)."""
    layers = {}
    for name, p in prune.items():
        if p["scheme"] == "pattern":
            layers[name] = {"scheme": "pattern", "ratio": p["ratio"], "entries": 4}
        else:
            layers[name] = {"scheme": p["scheme"], "ratio": p["ratio"], "block": list(p["block"])}
    return {"layers": layers}


def latency_ms(predictor: Any, cand: Candidate, out_hw: tuple[int, int]) -> float:
    """Predicted milliseconds per frame on the latency model's target."""
    layers = [c for _, c in named_genome_layers(cand.genome, out_hw, latency_prune(cand.prune), cand.precision)]
    return predictor.predict(layers)


def layer_breakdown(predictor: Any, cand: Candidate, out_hw: tuple[int, int]) -> list[dict[str, Any]]:
    """Per deployed layer: name, configuration key, scheme, ratio, precision and predicted ms (for the report)."""
    rows = []
    for name, c in named_genome_layers(cand.genome, out_hw, latency_prune(cand.prune), cand.precision):
        ms, how = predictor.layer_ms(c)
        rows.append({"layer": name, "op": c.op, "cin": c.cin, "cout": c.cout, "k": c.k, "groups": c.groups,
                     "scheme": c.scheme, "ratio": c.ratio, "block": list(c.block), "precision": c.precision,
                     "predicted_ms": ms, "source": how})
    return rows


def extract_deployed(supernet: Any, genome: Genome) -> torch.nn.Module:
    """The genome's standalone network with the shared weights, deployed (plain convs), in eval mode."""
    from supernet.standalone import extract

    model, _ = extract(supernet, genome)
    model = model.deploy().eval()
    model.arch = {"name": "genome", "scale": genome.scale, "config": {"genome": genome.to_dict(), "deployed": True}}
    return model


def apply_masks(model: torch.nn.Module, spec: dict[str, Any]) -> Any:
    """Apply the final magnitude masks of a pruning spec to `model` in place; returns the Pruner (None: no layer)."""
    from srprune.pruning.pruner import Pruner

    if not spec["layers"]:
        return None
    pruner = Pruner(model, spec)
    pruner.update(1.0)
    pruner.apply()
    return pruner


def masked_network(supernet: Any, cand: Candidate) -> tuple[torch.nn.Module, Any]:
    """The candidate's deployed network with every pruned layer's magnitude mask applied, and its Pruner."""
    model = extract_deployed(supernet, cand.genome)
    return model, apply_masks(model, pruning_spec({k: v for k, v in cand.prune.items() if v["ratio"] > 0}))


def adapt(model: torch.nn.Module, pruner: Any, batches: Sequence, lr: float) -> None:
    """A few Adam steps on fixed batches with the masks held (the candidate's short adaptation), in place.

    Why: shared weights are trained for every sub-network at once and pruning masks cut them
    without repair, so the raw proxy under-rates pruned layers and some block mixes; a handful of
    steps (the same batches for every candidate, seeded) recovers most of what fine-tuning would.
    """
    # the shared loop at a constant rate, without reseeding the global RNG (the search's state is its own)
    loop = TrainLoop(model, LoopSettings(steps=len(batches), lr=lr, cosine=False, seed=None))
    masks = Hooks(after_backward=pruner.mask_grads, after_step=lambda step: pruner.apply()) if pruner else Hooks()
    loop.run(batches, masks, progress=False)
    model.eval()


def simulated_network(model: torch.nn.Module, precision: dict[str, str],
                      calib: Sequence[torch.Tensor]) -> torch.nn.Module:
    """`model` (deployed, masked) with its int8/fp16 layers simulated (PlanNet's fake mode over the same
    parameters), activation ranges calibrated on `calib` (LR float tensors NCHW)."""
    from srprune.quant.plan import PlanNet
    from srprune.quant.quantize import calibrate

    net = PlanNet(model, precisions=precision)
    if "int8" in precision.values():
        if not calib:
            raise ValueError("an int8 candidate needs calibration batches (SearchContext.calib_batches)")
        calibrate(net, calib, progress=False)
    net.mode = "fake"
    return net.eval()


def candidate_psnr(supernet: Any, cand: Candidate, val: Sequence[tuple[torch.Tensor, torch.Tensor]],
               adapt_batches: Sequence = (), lr: float = 1e-4, calib: Sequence[torch.Tensor] = ()) -> float:
    """Mean PSNR-Y (project protocol) of the masked (and, for int8/fp16 layers, simulated) network over `val`
    ((lr, hr) float tensors).

    With `adapt_batches`, the network first takes one Adam step on each of them (see `adapt`); a candidate
    with int8/fp16 layers adapts in its simulated form (as its fine-tuning will be quantisation-aware).
    """
    from srprune.search.supernet_stage import protocol_psnr

    model, pruner = masked_network(supernet, cand)
    if cand.precision:
        model = simulated_network(model, cand.precision, calib)
    if adapt_batches:
        with torch.enable_grad():
            adapt(model, pruner, adapt_batches, lr)
    with torch.no_grad():
        scores = [protocol_psnr(model(lr_.reshape(1, *lr_.shape[-3:]))[0], hr.reshape(hr.shape[-3:]),
                                cand.genome.scale) for lr_, hr in val]
    return float(sum(scores) / len(scores))
