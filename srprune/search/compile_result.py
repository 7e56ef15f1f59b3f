"""compiled/TARGET/latency.json's common fields, whichever way the compiled model's time was got.

Its own module because both ways import it: the compile stage (measured here; predicted for a c-lib on a device over
RPC) and srprune.search.estimated_compile (estimated without a device), which the stage calls.
"""

from __future__ import annotations

from typing import Any

from srprune.search.config import RunConfig


def common_result(cfg: RunConfig, target: Any, done: Any, predicted_ms: float, deployed_ms: float,
                  layers: list[dict], **fields: Any) -> dict[str, Any]:
    """compiled/TARGET/latency.json: the fields every way of getting the compiled model's time writes (measured
    here, predicted for a c-lib on a device over RPC, estimated without a device), with the budget judged on
    `deployed_ms`, around the way's own `fields`. One place, so the replanning, the report and the run's headline
    find the same keys whichever wrote them; the per-layer rows come last, so the file reads headline first."""
    out_hw = cfg.out_hw
    budget = float(cfg.budget_ms)
    return {"target": target.name, "threads": target.threads, "output_size": [out_hw[1], out_hw[0]],
            "input_shape": list(done.shape), "budget_ms": budget, "predicted_ms": predicted_ms, **fields,
            "within_budget": deployed_ms <= budget, "budget_fill": deployed_ms / budget,
            "library": done.manifest["library"], "precision": c_lib_precision(done.manifest), "layers": layers}


def c_lib_precision(manifest: dict) -> str:
    """"int8", "int8 + fp32" (a mixed network) or the fp32 build's precision."""
    return manifest.get("precision", "fp32") + (" + fp32" if manifest.get("fp32_layers") else "")
