"""The /metrics page without a stack: what prometheus_text renders from the counters and the engine."""

from __future__ import annotations

import dataclasses

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from webapp.chat.metrics import HTTP_BUCKETS, HttpMetrics, StatsSnapshot, prefix_cache_summary, prometheus_text
from webapp.engine.llama import EngineStats
from webapp.engine.prefix_cache import PrefixCacheStats

STATS = StatsSnapshot(
    total_requests=5,
    successful_requests=3,
    failed_requests=1,
    active_requests=1,
    avg_response_time=0.25,
    success_rate=0.75,
    uptime_seconds=12.5,
)
ENGINE_STATS = EngineStats(
    slots=8,
    busy_slots=1,
    queue_depth=2,
    prompt_tokens=100,
    prompt_tokens_reused=40,
    prompt_tokens_evaluated=60,
    completion_tokens=77,
    requests_finished=3,
    requests_refused=1,
    decode_steps=50,
    tokens_per_s=123.5,
    estimated_wait_s=0.5,
    ttft_p50_ms=125.0,
    ttft_p95_ms=250.0,
    prefix_cache=PrefixCacheStats(
        entries=2, bytes=3 << 20, limit_bytes=256 << 20, hits=6, misses=2, stored=2, evictions=1
    ),
    prefix_tokens_restored=3000,
    prefix_restore_ms=15.0,
    prefix_save_ms=40.0,
)


class FakeEngine:
    def stats(self) -> EngineStats:
        return ENGINE_STATS


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def page_parse(text: str) -> tuple[Samples, dict[str, tuple[str, str]]]:
    """Samples by (name, labels), and (type, HELP) by family, as a Prometheus server reads them."""
    samples: Samples = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, families


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def http_observed(*requests: tuple[str, str, int, float]) -> HttpMetrics:
    http = HttpMetrics()
    for route, method, status, seconds in requests:
        http.observe(route=route, method=method, status=status, seconds=seconds)
    return http


def test_every_family_has_its_type_help_and_value() -> None:
    text = prometheus_text(app="office", model="tiny", stats=STATS, engine=FakeEngine(), http=HttpMetrics())
    samples, families = page_parse(text)

    office = labels(app="office")
    assert families["personachat_chat_requests"] == ("counter", "Chat turns started (REST, WebSocket, OpenAI).")
    assert families["personachat_engine_slots"] == ("gauge", "Slots (sequences decoded together).")
    assert families["personachat_model_ready"] == ("gauge", "1 once the model is loaded.")
    assert samples[("personachat_chat_requests_total", office)] == 5
    assert samples[("personachat_chat_requests_failed_total", office)] == 1
    assert samples[("personachat_chat_requests_active", office)] == 1
    assert samples[("personachat_model_ready", labels(app="office", model="tiny"))] == 1
    assert samples[("personachat_engine_slots", office)] == 8
    assert samples[("personachat_engine_busy_slots", office)] == 1
    assert samples[("personachat_engine_queue_depth", office)] == 2
    assert samples[("personachat_engine_tokens_per_second", office)] == 123.5
    assert samples[("personachat_engine_estimated_wait_seconds", office)] == 0.5
    assert samples[("personachat_engine_ttft_p50_seconds", office)] == 0.125  # milliseconds become seconds
    assert samples[("personachat_engine_ttft_p95_seconds", office)] == 0.25
    assert samples[("personachat_engine_prompt_tokens_total", office)] == 100
    assert samples[("personachat_engine_prompt_tokens_reused_total", office)] == 40
    assert samples[("personachat_engine_completion_tokens_total", office)] == 77
    assert samples[("personachat_engine_requests_refused_total", office)] == 1
    assert samples[("personachat_engine_decode_steps_total", office)] == 50
    assert "_created" not in text  # values come from our counters, not prometheus-client's own


def test_the_prefix_cache_is_exported_with_its_cost() -> None:
    samples, families = page_parse(
        prometheus_text(app="office", model="tiny", stats=STATS, engine=FakeEngine(), http=HttpMetrics())
    )
    office = labels(app="office")
    assert families["personachat_engine_prefix_cache_hits"][0] == "counter"
    assert families["personachat_engine_prefix_cache_bytes"][0] == "gauge"
    assert samples[("personachat_engine_prefix_cache_entries", office)] == 2
    assert samples[("personachat_engine_prefix_cache_bytes", office)] == 3 << 20
    assert samples[("personachat_engine_prefix_cache_limit_bytes", office)] == 256 << 20
    assert samples[("personachat_engine_prefix_cache_hits_total", office)] == 6
    assert samples[("personachat_engine_prefix_cache_misses_total", office)] == 2
    assert samples[("personachat_engine_prefix_cache_evictions_total", office)] == 1
    assert samples[("personachat_engine_prefix_tokens_restored_total", office)] == 3000
    assert samples[("personachat_engine_prefix_restore_seconds_total", office)] == 0.015
    assert samples[("personachat_engine_prefix_save_seconds_total", office)] == 0.04
    summary = prefix_cache_summary(ENGINE_STATS)
    assert summary is not None
    assert summary["hit_ratio"] == 0.75 and summary["restore_ms_per_token"] == 0.005


def test_no_prefix_families_when_the_cache_is_off() -> None:
    class Off:
        def stats(self) -> EngineStats:
            return dataclasses.replace(ENGINE_STATS, prefix_cache=None)

    _, families = page_parse(prometheus_text(app="office", model="tiny", stats=STATS, engine=Off(), http=HttpMetrics()))
    assert "personachat_engine_slots" in families
    assert not [name for name in families if "prefix" in name]


def test_loading_model_is_not_ready_and_has_no_engine_metrics() -> None:
    text = prometheus_text(app="character", model="tiny", stats=STATS, engine=None, http=HttpMetrics())
    samples, families = page_parse(text)

    assert samples[("personachat_model_ready", labels(app="character", model="tiny"))] == 0
    assert samples[("personachat_chat_requests_total", labels(app="character"))] == 5
    assert not [name for name in families if name.startswith("personachat_engine_")]


def test_http_requests_are_counted_and_timed_per_route() -> None:
    http = http_observed(
        ("office/Llama", "POST", 200, 0.3),
        ("office/Llama", "POST", 200, 2.0),
        ("office/Llama", "POST", 400, 0.004),
        ("unmatched", "GET", 404, 0.001),
    )
    samples, families = page_parse(
        prometheus_text(app="office", model="tiny", stats=STATS, engine=FakeEngine(), http=http)
    )

    assert families["personachat_http_requests"] == ("counter", "HTTP requests answered, by route, method and status.")
    assert families["personachat_http_request_duration_seconds"] == (
        "histogram",
        "Time until the response headers, by route.",
    )

    def requests(route: str, method: str, status: str) -> float:
        return samples[
            ("personachat_http_requests_total", labels(app="office", route=route, method=method, status=status))
        ]

    assert requests("office/Llama", "POST", "200") == 2
    assert requests("office/Llama", "POST", "400") == 1
    assert requests("unmatched", "GET", "404") == 1

    llama = labels(app="office", route="office/Llama")
    bounds = [f"{bound:g}" for bound in HTTP_BUCKETS] + ["+Inf"]
    buckets = {
        le: samples[("personachat_http_request_duration_seconds_bucket", llama | labels(le=le))] for le in bounds
    }
    assert buckets["0.005"] == 1 and buckets["0.25"] == 1
    assert buckets["0.5"] == 2 and buckets["1"] == 2
    assert buckets["2.5"] == 3 and buckets["60"] == 3
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert buckets["+Inf"] == samples[("personachat_http_request_duration_seconds_count", llama)] == 3
    assert samples[("personachat_http_request_duration_seconds_sum", llama)] == pytest.approx(2.304)


def test_label_values_are_escaped() -> None:
    route = 'we"ird\\route\nname'
    http = http_observed((route, "GET", 500, 100.0))
    samples, _ = page_parse(prometheus_text(app="office", model='a "model"', stats=STATS, engine=None, http=http))

    assert (
        samples[("personachat_http_requests_total", labels(app="office", route=route, method="GET", status="500"))] == 1
    )
    assert samples[("personachat_model_ready", labels(app="office", model='a "model"'))] == 0


def test_metrics_stay_out_of_the_global_registry() -> None:
    before = {family.name for family in prometheus_client.REGISTRY.collect()}
    for _ in range(2):  # a second page registers nothing twice
        prometheus_text(app="office", model="tiny", stats=STATS, engine=FakeEngine(), http=HttpMetrics())

    after = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert after == before
    assert not [name for name in after if name.startswith("personachat_")]
