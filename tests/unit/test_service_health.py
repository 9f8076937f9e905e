"""The monitor's reading of the service's Prometheus metrics: zero-result rate and latency quantiles."""

from shoploop.monitoring.monitor import _quantile, parse_health

METRICS = """# HELP shoploop_searches_total searches answered, by model version and outcome
# TYPE shoploop_searches_total counter
shoploop_searches_total{model_version="v2",outcome="results"} 90.0
shoploop_searches_total{model_version="v2",outcome="zero_results"} 10.0
shoploop_searches_total{model_version="v1",outcome="zero_results"} 500.0
# HELP bentoml_service_request_duration_seconds request duration
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_bucket{endpoint="/search",http_response_code="200",le="0.004"} 40.0
bentoml_service_request_duration_seconds_bucket{endpoint="/search",http_response_code="200",le="0.008"} 90.0
bentoml_service_request_duration_seconds_bucket{endpoint="/search",http_response_code="200",le="0.02"} 100.0
bentoml_service_request_duration_seconds_bucket{endpoint="/search",http_response_code="200",le="+Inf"} 100.0
bentoml_service_request_duration_seconds_bucket{endpoint="/search",http_response_code="400",le="+Inf"} 7.0
bentoml_service_request_duration_seconds_bucket{endpoint="/feedback",http_response_code="200",le="0.004"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/feedback",http_response_code="200",le="+Inf"} 3.0
"""


def test_the_serving_versions_zero_result_rate_and_search_latency():
    health = parse_health(METRICS, "v2")
    assert health["searches"] == 100 and health["zero_result_rate"] == 0.1
    assert health["search_p50_ms"] == 4.8  # 50th of 100: the second bucket, 10 of its 50, interpolated
    assert 8 < health["search_p99_ms"] < 20


def test_quantiles_interpolate_within_a_bucket_like_prometheus():
    buckets = [(0.01, 50.0), (0.02, 100.0), (float("inf"), 100.0)]
    assert _quantile(buckets, 0.5) == 0.01 and abs(_quantile(buckets, 0.75) - 0.015) < 1e-12
    assert _quantile([(float("inf"), 0.0)], 0.5) is None
    assert parse_health("", "v1") == {"searches": 0, "zero_result_rate": None, "search_p50_ms": None, "search_p99_ms": None}
