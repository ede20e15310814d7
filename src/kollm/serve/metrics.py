"""Prometheus metrics, named after vLLM's where they mean the same (with kollm's prefix), so existing dashboards
need only the prefix changed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kollm.serve.client import EngineClient

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _EngineState:
    """What the engine itself knows, read at scrape time through the engine contract (serve/client.py)."""

    def __init__(self, engine: Callable[[], EngineClient | None]) -> None:
        self.engine = engine

    def collect(self) -> Iterator[object]:
        e = self.engine()
        if e is None:  # still loading
            return
        st = e.stats()
        yield GaugeMetricFamily("kollm:kv_cache_usage_perc", "KV-cache use (1 = the kv_cache_mb budget)",
                                value=st.kv_usage)
        # memory the server holds beyond the weights (what its RSS grows by, each up to its budget)
        yield GaugeMetricFamily("kollm:kv_cache_bytes", "Bytes held by the running batch's KV slots",
                                value=st.kv_bytes)
        yield GaugeMetricFamily("kollm:prefix_cache_bytes", "Bytes held by stored prompt prefixes (prefix_cache_mb)",
                                value=st.prefix_bytes)
        yield CounterMetricFamily("kollm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache",
                                  value=st.prefix_queries)
        yield CounterMetricFamily("kollm:prefix_cache_hits", "Prompt tokens found in the prefix cache",
                                  value=st.prefix_hits)
        # speculative decoding, vLLM's spec_decode_* names: acceptance rate = accepted / draft tokens
        yield CounterMetricFamily("kollm:spec_decode_num_drafts", "Rows that ran with drafted tokens",
                                  value=st.spec_drafts)
        yield CounterMetricFamily("kollm:spec_decode_num_draft_tokens", "Tokens drafted", value=st.spec_draft_tokens)
        yield CounterMetricFamily("kollm:spec_decode_num_accepted_tokens", "Drafted tokens accepted",
                                  value=st.spec_accepted_tokens)


class Metrics:
    def __init__(self, engine: Callable[[], EngineClient | None] | None = None) -> None:
        self.registry = r = CollectorRegistry()  # one per app: tests start several servers in one process
        if engine is not None:
            r.register(_EngineState(engine))
        self.running = Gauge("kollm:num_requests_running", "Requests generating now", registry=r)
        self.waiting = Gauge("kollm:num_requests_waiting", "Requests waiting for the engine", registry=r)
        self.prompt_tokens = Counter("kollm:prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("kollm:generation_tokens", "Tokens generated", registry=r)
        self.requests = Counter("kollm:request_success", "Finished requests, by reason", ["finished_reason"],
                                registry=r)
        # per adapter (vLLM shows adapters in lora_requests_info): how much each one is used
        self.lora_requests = Counter("kollm:lora_requests", "Requests per LoRA adapter", ["lora_name"], registry=r)
        self.ttft = Histogram("kollm:time_to_first_token_seconds", "Time to first token", buckets=_LATENCY,
                              registry=r)
        self.itl = Histogram("kollm:inter_token_latency_seconds", "Time between tokens of a stream",
                             buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0), registry=r)
        self.e2e = Histogram("kollm:e2e_request_latency_seconds", "Request latency", buckets=_LATENCY, registry=r)
