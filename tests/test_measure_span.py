"""The deployed network's timing on a machine whose speed shifts: rounds paced over a span, and a result outside the
budget window timed again before the run replans (docs/benchmarks.md `measurement_noise` says why).

The timers here are plain functions returning set times: what is under test is the pacing and the decision rule,
not a kernel's speed (tests/test_search.py's replan test runs the rule on real compiled networks).
"""

from __future__ import annotations

import time

import pytest

from compiler.latency.runners import interleaved
from srprune.search.stages.compile import confirm_outside_window


def fixed(ms: float, calls: list[float] | None = None):
    """A timer that takes no time and reports `ms` per run, noting the wall time of each call in `calls`."""
    def run(repeat: int) -> list[float]:
        if calls is not None:
            calls.append(time.monotonic())
        return [ms] * repeat
    return run


def test_rounds_spread_over_the_span():
    calls: list[float] = []
    start = time.monotonic()
    samples = interleaved([fixed(1.0, calls), fixed(2.0)], 5, span_s=0.8)
    assert samples == [[1.0] * 5, [2.0] * 5]
    # round r starts no earlier than r / 4 of the span: the five rounds cover at least 0.8 s
    for r, t in enumerate(calls):
        assert t - start >= 0.8 * r / 4 - 1e-3
    assert calls[-1] - start >= 0.8 - 1e-3


def test_no_span_is_one_burst():
    start = time.monotonic()
    assert interleaved([fixed(1.0)], 50) == [[1.0] * 50]
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("first_ms", [34.5, 37.0, 40.0])
def test_a_result_inside_the_window_is_kept(first_ms):
    calls: list[float] = []
    first = [first_ms - 1, first_ms, first_ms + 1]
    samples, again = confirm_outside_window([x for x in first], fixed(99.0, calls), 3, 0.1, 40.0, 0.85, False)
    assert samples == first and again == {} and calls == []


@pytest.mark.parametrize("first, reason", [([41.0, 45.0, 50.0], "over"), ([20.0, 25.0, 30.0], "under")])
def test_a_result_outside_the_window_is_timed_again_and_pooled(first, reason):
    calls: list[float] = []
    samples, again = confirm_outside_window(list(first), fixed(36.0, calls), 3, 0.2, 40.0, 0.85, False)
    assert samples == first + [36.0] * 3 and len(calls) == 3
    assert again["first_ms"] == first[1] and again["timed_again"]["reason"] == reason
    assert again["timed_again"]["median_ms"] == 36.0
    assert again["timed_again"]["pooled_ms"] == sorted(samples)[len(samples) // 2 - 1] / 2 + \
        sorted(samples)[len(samples) // 2] / 2  # the median of six: the mean of the middle two
    assert calls[-1] - calls[0] >= 0.2 - 1e-3  # the second timing spreads over the span too


def test_no_span_means_no_second_timing():
    calls: list[float] = []
    samples, again = confirm_outside_window([60.0], fixed(36.0, calls), 3, 0.0, 40.0, 0.85, False)
    assert samples == [60.0] and again == {} and calls == []


def test_span_is_a_config_key_with_one_line_errors(run_cli, tmp_path):
    from srprune.search.config import resolve
    from tests.conftest import assert_one_line_error
    from tests.test_search import TINY, write_config

    assert resolve({**TINY, "run_dir": "r", "latency": {"span_s": 5}})["latency"]["span_s"] == 5
    assert resolve({k: v for k, v in TINY.items() if k != "latency"} | {"run_dir": "r"})["latency"]["span_s"] == 20
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", latency__span_s=-1)
    assert_one_line_error(run_cli("run", "-c", cfg), "latency.span_s", alone=True)


def test_the_noise_benchmark_paces_and_scores_like_the_stage():
    """benchmarks/measurement_noise.py on made-up traces: `paced` takes the first run due at each of the stage's
    round times; a steady network is never outside the window, and one with slow phases is outside it less often
    once a result outside is timed again."""
    from benchmarks.measurement_noise import FILLS, analyse, paced

    clock = [(0.1 * i, 0.1 * i) for i in range(3000)]  # a run every 0.1 s whose "time" is its start
    got = paced(clock, 0, 25, 20.0)
    assert len(got) == 25 and all(20.0 * r / 24 - 1e-9 <= t < 20.0 * r / 24 + 0.1 for r, t in enumerate(got))
    assert paced(clock, 2990, 25, 20.0) is None  # the trace ends before the span does
    steady = [(0.1 * i, 10.0 + (i % 7) * 0.01) for i in range(3000)]
    res = analyse({"runs": steady, "probes": []}, 20.0)
    assert [r["fill"] for r in res["replans"]] == list(FILLS)
    assert all(r[k] == 0 for r in res["replans"] for k in ("one burst", "span", "span + again"))
    # 20 s at 10 ms, then 10 s at 13 ms, over and over (median 10): a burst inside a slow phase is over budget
    phased = [(0.1 * i, 10.0 if i % 300 < 200 else 13.0) for i in range(6000)]
    r96 = next(r for r in analyse({"runs": phased, "probes": []}, 20.0)["replans"] if r["fill"] == 0.96)
    assert r96["one burst"] > 0.2 and r96["span + again"] < r96["one burst"]


def test_changing_the_span_re_times_the_deployed_model_but_keeps_the_latency_table():
    from srprune.search.config import resolve
    from srprune.search.hashes import stage_hashes
    from tests.test_search import TINY

    a = stage_hashes(resolve({**TINY, "run_dir": "r"}))
    b = stage_hashes(resolve({**TINY, "run_dir": "r", "latency": {**TINY["latency"], "span_s": 5}}))
    c = stage_hashes(resolve({**TINY, "run_dir": "r", "latency": {**TINY["latency"], "repeat": 4}}))
    assert a["latency"] == b["latency"] and a["compile"] != b["compile"]
    assert a["latency"] != c["latency"]  # the table's own keys still re-measure it
