"""The input hash of every stage of `srprune run`, and the checksum of the model file some stages read.

Why a module of its own: the pipeline stores these with each stage's state and the report recomputes them to
refuse stale outputs; neither should import the other for it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from srprune.layout import RunLayout
from srprune.search.stages import STAGES


def _value(cfg: dict[str, Any], key: str) -> Any:
    out: Any = cfg
    for part in key.split("."):
        out = out.get(part) if isinstance(out, dict) else None  # a key newer than the run's config.yaml: None
    return out


def stage_hashes(cfg: dict[str, Any], files: dict[str, str] | None = None) -> dict[str, str]:
    """Input hash of every stage (config keys it reads + hashes of the stages it depends on).

    `files` ({stage: content hash}) adds the content of input files a stage reads besides its dependencies'
    results (`Stage.reads_files`: the finetune stage reads search/chosen.json, which a replan rewrites).
    """
    hashes: dict[str, str] = {}
    for stage in STAGES:
        doc = {"inputs": {k: _value(cfg, k) for k in stage.reads}, "after": [hashes[d] for d in stage.after]}
        if files and stage.name in files:
            doc["file"] = files[stage.name]
        hashes[stage.name] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return hashes


def file_hashes(layout: RunLayout) -> dict[str, str]:
    """{stage: hash of the content of the input files it declares} for the files that exist now."""
    out = {}
    for stage in STAGES:
        files = [p for p in stage.reads_files(layout) if p.is_file()]
        if files:
            h = hashlib.sha256()
            for p in files:
                h.update(p.read_bytes())
            out[stage.name] = h.hexdigest()[:16]
    return out


def model_checksum(path: Path) -> str | None:
    """SHA-256 of a model file (None when absent): what the compile and evaluate stages record having used."""
    from compiler.artifact import sha256

    return sha256(path) if path.is_file() else None


def stale_stages(run_dir: Path) -> dict[str, str]:
    """Stages whose outputs must not be presented, with the reason: not finished, finished with other inputs
    than the run's config.yaml now names, or made from another final/model.pt than the one in the folder."""
    try:
        cfg = yaml.safe_load(RunLayout(run_dir).config.read_text(encoding="utf-8"))
        states = json.loads(RunLayout(run_dir).stages.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {s.name: "no readable config.yaml / stages.json" for s in STAGES}
    layout = RunLayout(run_dir, str(cfg["target"]))
    current = stage_hashes(cfg, file_hashes(layout))
    model = model_checksum(layout.final_model)
    out = {}
    for name in (s.name for s in STAGES if s.enabled(cfg)):
        st = states.get(name) or {}
        used = st.get("model_sha256")
        if not st.get("done"):
            out[name] = "not finished"
        elif st.get("hash") != current[name]:
            out[name] = "its inputs changed since it ran"
        elif used and used != model:
            out[name] = "final/model.pt changed since it ran"
    return out
