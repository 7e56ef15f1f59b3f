"""`srprune report RUN`: one self-contained HTML file (plots inline as SVG, crops as data URIs; opens offline).

Reads only the run folder's files (config.yaml, stages.json, search/*.csv|json, compiled/TARGET/latency.json,
eval/metrics.json, eval/crops/), so it can be re-made at any time and for a run copied from another machine.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import yaml

from srprune.errors import InputError
from srprune.layout import RunLayout
from srprune.search.latency_label import deployed_ms, latency_word


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists() or not path.read_text().strip():
        return []
    return list(csv.DictReader(io.StringIO(path.read_text())))


def pareto_svg(stage2: list[dict], stage3: list[dict], chosen: dict | None, budget: float | None,
               measured: float | None, word: str = "measured") -> str:
    """PSNR vs latency: every trial, the feasible front, the chosen one and the budget, as SVG text. Where the
    search chose precisions, feasible trials are coloured by their precision mix (how many layers are not fp32)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srprune.search.study import nondominated

    def pts(rows, ok):
        return ([float(r["predicted_ms"]) for r in rows if (r["feasible"] == "True") == ok],
                [float(r["proxy_psnr"]) for r in rows if (r["feasible"] == "True") == ok])

    def low_precision_layers(rows):  # "cells.0.conv:int8 tail:int8" -> 2; "-" (all fp32) or no column -> 0
        return [len((r.get("precision") or "-").replace("-", "").split()) for r in rows if r["feasible"] == "True"]

    mixed = any(low_precision_layers(stage2 + stage3))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    x, y = pts(stage2, False)
    ax.scatter(x, y, s=14, c="lightgray", label="stage 2, outside the budget window")
    colour = {"c": low_precision_layers(stage2), "cmap": "viridis", "vmin": 0,
              "vmax": max(low_precision_layers(stage2 + stage3))} if mixed else {"c": "tab:blue"}
    x, y = pts(stage2, True)
    dots = ax.scatter(x, y, s=16, label="stage 2, feasible", **colour)
    if stage3:
        x, y = pts(stage3, True)
        square = {**colour, "c": low_precision_layers(stage3)} if mixed else {"c": "tab:orange"}
        ax.scatter(x, y, s=16, marker="s", label="stage 3 (ratios), feasible", **square)
    if mixed:
        fig.colorbar(dots, ax=ax, label="layers in int8 / fp16 (the rest fp32)")
    feas = [(float(r["proxy_psnr"]), float(r["predicted_ms"])) for r in stage2 + stage3 if r["feasible"] == "True"]
    front = [(feas[i][1], feas[i][0]) for i in nondominated(feas)]
    if front:
        ax.step([f[0] for f in front], [f[1] for f in front], where="post", c="tab:blue", lw=0.8,
                label="Pareto front (feasible)")
    if chosen:
        ax.scatter([chosen["predicted_ms"]], [chosen["proxy_psnr"]], s=160, marker="*", c="red", zorder=5,
                   label="chosen (predicted)")
    if budget:
        ax.axvline(budget, c="k", ls="--", lw=0.8, label=f"budget {budget:g} ms")
    if measured and chosen:
        ax.scatter([measured], [chosen["proxy_psnr"]], s=60, marker="x", c="red", label=f"chosen, {word} ms")
    ax.set_xlabel("latency per frame, ms (predicted by the latency model)")
    ax.set_ylabel("proxy PSNR-Y, dB (shared weights, masks, no fine-tuning)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _block_of(layer: str, genome: dict) -> tuple[str, str]:
    parts = layer.split(".")
    if parts[0] == "cells":
        c = genome["cells"][int(parts[1])]
        return c["block"], str(c["width"])
    return parts[0], str(genome["head"]) if parts[0] == "head" else "-"


def build_report(run_dir: Path, stale: dict[str, str]) -> str:
    """The report's HTML text; outputs of the `stale` stages ({stage: why}, srprune.search.hashes.stale_stages)
    are left out, with a note saying why."""
    config = RunLayout(run_dir).config
    cfg = yaml.safe_load(config.read_text()) if config.exists() else None
    if cfg is None:
        raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
    layout = RunLayout(run_dir, str(cfg["target"]))
    stages = _read_json(layout.stages) or {}
    fresh = {name: name not in stale for name in ("arch", "ratios", "compile", "evaluate")}
    stage2 = _read_csv(layout.trials_csv) if fresh["arch"] else []
    stage3 = _read_csv(layout.ratios_csv) if fresh["ratios"] else []
    chosen = _read_json(layout.chosen) if fresh["ratios"] else None
    lat = _read_json(layout.latency_report) if fresh["compile"] else None
    metrics = _read_json(layout.metrics) if fresh["evaluate"] else None
    budget = float(cfg["budget_ms"])
    parts = [f"<h1>srprune run: {html.escape(run_dir.name)}</h1>",
             f"<p>x{cfg['scale']} super-resolution, target <b>{html.escape(str(cfg['target']))}</b> "
             f"({cfg['threads']} threads), budget <b>{budget:g} ms</b> per {html.escape(str(cfg['output_size']))} "
             f"output frame; training data {html.escape(str(cfg['data']))}.</p>"]
    lat_cfg = cfg.get("latency") or {}
    if lat_cfg.get("source") == "estimate":
        parts.append(f"<p><b>Every latency in this report is estimated (static model of CPU "
                     f"{html.escape(str(lat_cfg.get('cpu')))})</b>: llvm-mca on the code compiled for the target, "
                     "nothing measured on a device; memory is one term (each kernel's bytes at the SoC's spec-sheet "
                     "bandwidth), cache levels and thread start-up are not modelled (docs/latency_estimate.md).</p>")
    summary = []
    left_out = [f"{name} ({why})" for name, why in stale.items() if name != "report" and name in stages]
    if left_out:
        summary.append("<b>Not shown, stale:</b> " + html.escape("; ".join(left_out)) + ". Re-run the pipeline "
                       "(srprune run -c RUN/config.yaml) to bring them up to date.")
    word = latency_word(lat) if lat else "measured"
    if lat and "estimated_ms" in lat and "time_it" in lat:  # an int8 c-lib for a device over RPC: not timed whole
        verdict = "within" if lat["within_budget"] else "OVER"
        summary.append(f"Latency of the compiled int8 c-lib ({html.escape(lat['precision'])}), <b>"
                       f"{html.escape(word)}</b>: <b>{lat['estimated_ms']:.1f} ms</b> = {lat['budget_fill']:.0%} of "
                       f"the budget, {verdict} it. TVM's RPC server cannot load a C library, so the whole network was "
                       f"not timed: {html.escape(lat['time_it'])}. Numerics ({html.escape(str(lat.get('checked_on')))}"
                       f"): max |diff| {lat['max_abs_diff']:.2g} vs the integer contract's reference.")
    elif lat and "estimated_ms" in lat:
        verdict = "within" if lat["within_budget"] else "OVER"
        summary.append(f"Latency of the compiled model, <b>{html.escape(word)}</b>: <b>{lat['estimated_ms']:.1f} ms</b> "
                       f"(llvm-mca on its own kernels; nothing was measured on a device) = {lat['budget_fill']:.0%} "
                       f"of the budget, {verdict} it; predicted from the estimated table {lat['predicted_ms']:.1f} ms.")
    elif lat:
        verdict = "within" if lat["within_budget"] else "OVER"
        runs = len(lat.get("samples_ms") or []) or lat["rounds"]
        again = lat.get("timed_again")
        spread = f" over {'two spans of ' if again else ''}{lat['span_s']:g} s" if lat.get("span_s") else ""
        if again:
            spread += (f"; {lat['first_ms']:.1f} ms in the first {lat['rounds']}, {again['reason']} the window, so timed "
                       f"again: {again['median_ms']:.1f} ms, both pooled")
        summary.append(f"Measured latency of the compiled model: <b>{lat['measured_ms']:.1f} ms</b> (median of "
                       f"{runs} runs{spread}, min {lat['min_ms']:.1f}, max {lat['max_ms']:.1f}) = "
                       f"{lat['budget_fill']:.0%} of the budget, {verdict} it; predicted {lat['predicted_ms']:.1f} ms. "
                       + (f"Compiled int8 c-lib ({lat['precision']}) vs the integer contract's reference: max |diff| "
                          f"{lat['max_abs_diff']:.1e}." if lat.get("precision", "fp32") != "fp32" else
                          f"Compiled output vs PyTorch: max |diff| {lat['max_abs_diff']:.1e}."))
    if chosen and chosen.get("under_fill"):
        min_fill = float(cfg["search"]["min_fill"])
        summary.append(f"<b>No network of the search space filled search.min_fill ({min_fill:.0%}) of the budget; the "
                       f"best one under budget was taken</b>: {chosen['fill']:.0%} of the budget predicted. "
                       "A larger space (more cells, wider widths) could use the rest.")
    feedback = _read_json(layout.feedback) or []
    if feedback:
        tried = "; ".join(f"{deployed_ms(f):.1f} ms {'measured' if 'measured_ms' in f else 'estimated'} vs "
                          f"{f['predicted_ms']:.1f} predicted" for f in feedback)
        summary.append(f"Replanned after measurements outside the budget window ({len(feedback)}): {tried}. The model "
                       "above is the candidate chosen after correcting every trial's prediction by the last measurement.")
    if metrics:
        for name, d in metrics["datasets"].items():
            summary.append(f"{html.escape(name)}: PSNR-Y <b>{d['final']['psnr']:.3f} dB</b> "
                           f"(bicubic {d['bicubic']['psnr']:.3f}), SSIM-Y {d['final']['ssim']:.4f}.")
    if summary:
        parts.append("<ul>" + "".join(f"<li>{s}</li>" for s in summary) + "</ul>")
    if stage2:
        parts.append("<h2>Search: proxy PSNR vs predicted latency</h2>")
        parts.append(pareto_svg(stage2, stage3, chosen, budget, deployed_ms(lat) if lat else None,
                                "estimated" if lat and "estimated_ms" in lat else "measured"))
        n_ok = sum(r["feasible"] == "True" for r in stage2)
        steps = int(cfg["search"].get("adapt_steps", 0))
        adapt = f", after {steps} adaptation steps on fixed batches" if steps else ""
        parts.append(f"<p>Stage 2: {len(stage2)} trials ({n_ok} feasible); stage 3: {len(stage3)} trials. "
                     f"Feasible = predicted latency within [{cfg['search']['min_fill']:.0%}, "
                     f"{1 - cfg['search']['margin']:.0%}] of the budget. Proxy PSNR is measured with the supernet's "
                     f"shared weights and the pruning masks applied{adapt}, before fine-tuning.</p>")
    if stages:
        rows = [[name, "done" if s.get("done") else ("this report" if name == "report" else "not done"),
                 _fmt(s.get("seconds"), ".0f"), s.get("finished_at", "-")] for name, s in stages.items()]
        parts += ["<h2>Stages</h2>", _table(["stage", "state", "seconds", "finished (UTC)"], rows)]
    if chosen:
        g = chosen["genome"]
        parts.append("<h2>Chosen network, layer by layer</h2>")
        layer_rows = lat["layers"] if lat else []
        rows = []
        for r in layer_rows:
            block, width = _block_of(r["layer"], g)
            k = f"{r['k']}x{r['k']}" + (" dw" if r["groups"] > 1 else "")
            scheme = r["scheme"] + (f" {r['block'][0]}x{r['block'][1]}" if r["scheme"] == "block" else "")
            rows.append([r["layer"], block, width, f"{r['cin']}->{r['cout']}", k if r["op"] == "conv" else r["op"],
                         scheme, _fmt(r["ratio"]), r.get("precision", "fp32"), _fmt(r["predicted_ms"]),
                         _fmt(r.get("measured_ms", r.get("estimated_ms")))])
        if rows:
            parts.append(_table(["layer", "block", "cell width", "channels", "kernel", "scheme", "ratio",
                                 "precision", "predicted ms",
                                 "estimated ms (own kernel)" if lat and "estimated_ms" in lat
                                 else "measured ms (alone)"], rows))
        parts.append(f"<p>Genome: <code>{html.escape(json.dumps(g))}</code></p>")
    if metrics:
        rows = []
        for name, d in metrics["datasets"].items():
            for model in ("bicubic", "final"):
                rows.append([name, model, f"{d[model]['psnr']:.4f}", f"{d[model]['ssim']:.4f}"])
        parts += ["<h2>PSNR / SSIM</h2>", _table(["dataset", "model", "PSNR-Y (dB)", "SSIM-Y"], rows),
                  "<p>Protocol: Y of ITU-R BT.601, SR rounded to uint8, border of `scale` pixels cropped, "
                  "MATLAB-bicubic LR (docs/architecture.md).</p>"]
        crops = metrics.get("crops")
        if isinstance(crops, dict):  # runs evaluated before the crops were chosen per image: one crop
            crops = [crops]
        if crops:
            parts.append("<h2>Crops</h2><p>Per image: the windows with the most detail (mean luma gradient of the "
                         "ground truth) and the one where the model differs most from bicubic.</p>")
        for crop in crops or []:
            imgs = []
            for label, fname in crop["files"].items():
                data = base64.b64encode((layout.crops / fname).read_bytes()).decode()
                imgs.append(f"<figure><img src='data:image/png;base64,{data}' width='256' "
                            f"style='image-rendering:pixelated'><figcaption>{html.escape(label)}</figcaption></figure>")
            why = {"detail": "detail", "difference": "model vs bicubic"}.get(crop.get("why", ""), "")
            parts += [f"<h3>{html.escape(crop['image'])}, {crop['size']} px at y={crop['y']}, x={crop['x']}"
                      f"{' (' + why + ')' if why else ''}</h3>", "<div class='crops'>" + "".join(imgs) + "</div>"]
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:right}th{background:#f3f3f3}.crops{display:flex;gap:12px}"
             "figure{margin:0;text-align:center}code{font-size:12px;word-break:break-all}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>srprune report: {html.escape(run_dir.name)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(run_dir: Path, stale: dict[str, str]) -> Path:
    """Write RUN/report.html (atomically)."""
    from srcommon.atomic import write_text

    path = RunLayout(run_dir).report
    write_text(path, build_report(run_dir, stale))
    return path
