"""The Benchmarks page's table of chunked and fused token-level KD against the naive loss."""

from __future__ import annotations

from kdatlas.site.pages import _llm_kd_tables


def _form(peak: float, seconds: float) -> dict[str, float]:
    return {"peak_extra_mib": peak, "median_s": 2 * seconds, "median_cpu_s": seconds}


def test_the_llm_table_shows_peaks_and_ratios_per_size() -> None:
    row = {
        "divergence": "forward_kl",
        "tokens": 2048,
        "vocab": 32000,
        "naive": _form(1000.0, 2.0),
        "chunked": _form(240.0, 1.0),
        "naive_head": _form(1600.0, 4.0),
        "fused": {"error": "MemoryError"},
        "chunked_memory_ratio": 0.24,
        "chunked_time_ratio": 0.5,
        "chunked_cpu_time_ratio": 0.5,
    }
    record = {"device": "CPU (x86_64, 1 thread(s))", "repeats": 3, "hidden": 256, "rows": [row]}
    text = "\n".join(_llm_kd_tables({"cpu": record}))
    assert "## Token-level KD at LLM vocabulary sizes on CPU" in text
    assert (
        "| forward&#95;kl | 2048 x 32000 | 240 of 1000 (0.24) | 0.50 (0.50) | MemoryError | - |"
        in text
    )
    assert _llm_kd_tables({}) == []
