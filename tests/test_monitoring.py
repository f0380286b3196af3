"""The Prometheus metrics `cnnpipe serve` exports: recorded, rendered, and read back with prometheus_client's parser;
and the monitoring config file that enables the endpoint."""

import re
import threading

import grpc
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.serving import monitoring
from cnnpipe.serving.monitoring import Metrics, MonitoringConfigError, read_config

OK = grpc.StatusCode.OK
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
EXAMPLE_COUNTS = ":tensorflow:serving:request_example_counts"

FAMILIES = {
    ":tensorflow:cc:saved_model:load_attempt_count": "counter",
    ":tensorflow:cc:saved_model:load_latency": "counter",
    ":tensorflow:serving:model_version_state": "gauge",
    ":tensorflow:serving:model_warmup_latency": "histogram",
    ":tensorflow:serving:model_warmup_records_read": "counter",
    REQUEST_COUNT: "counter",
    ":tensorflow:serving:request_example_count_total": "counter",
    EXAMPLE_COUNTS: "histogram",
    REQUEST_LATENCY: "histogram",
}


def families(metrics: Metrics) -> dict[str, Metric]:
    """The rendered families by the name their "# TYPE" line gives (the parser drops a counter's "_total")."""
    text = metrics.prometheus_text().decode("utf-8")
    names = re.findall(r"^# TYPE (\S+) \S+$", text, re.MULTILINE)
    parsed = list(text_string_to_metric_families(text))
    assert len(parsed) == len(names)
    return dict(zip(names, parsed))


def values(family: Metric) -> dict[tuple[str, ...], float]:
    """A counter's or gauge's values by label values, in the order the line gives them."""
    return {tuple(sample.labels.values()): sample.value for sample in family.samples}


def histogram(family: Metric, *labels: str) -> tuple[dict[str, float], float, float]:
    """The cumulative bucket counts by "le", the sum and the count of the series with these label values."""
    series = [sample for sample in family.samples if tuple(sample.labels.values())[:len(labels)] == labels
              and len(sample.labels) - ("le" in sample.labels) == len(labels)]
    buckets = {sample.labels["le"]: sample.value for sample in series if sample.name.endswith("_bucket")}
    total, = (sample.value for sample in series if sample.name.endswith("_sum"))
    count, = (sample.value for sample in series if sample.name.endswith("_count"))
    return buckets, total, count


def series(family: Metric) -> set[tuple[str, ...]]:
    return {tuple(value for name, value in sample.labels.items() if name != "le") for sample in family.samples}


def test_an_empty_page_declares_every_metric_under_tf_serving_s_names():
    text = Metrics().prometheus_text().decode("utf-8")
    assert text == "".join(f"# TYPE {name} {kind}\n" for name, kind in sorted(FAMILIES.items()))
    assert monitoring.CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_requests_are_counted_and_timed_as_tf_serving_records_them():
    metrics = Metrics()
    code = grpc.StatusCode
    for api, entrypoint, status, seconds in [
            ("Predict", "GRPC", OK, 0.0015), ("Predict", "GRPC", OK, 0.25),
            ("Predict", "GRPC", code.INVALID_ARGUMENT, 0.01), ("Classify", "GRPC", code.NOT_FOUND, 1),
            ("GetModelMetadata", "GRPC", OK, 1), ("GetModelStatus", "GRPC", OK, 1), ("MultiInference", "GRPC", OK, 1),
            ("Predict", "REST", OK, 0.003), ("GetModelStatus", "REST", OK, 0.0005),
            ("GetModelMetadata", "REST", OK, 0.0007), ("Regress", "REST", code.FAILED_PRECONDITION, 1)]:
        metrics.observe_request("m", api, entrypoint, status, seconds)
    metrics.observe_request("", "", "REST", code.INVALID_ARGUMENT, 1)  # a path naming no model or API
    found = families(metrics)

    # gRPC counts Predict, Classify and Regress only; REST counts every request.
    assert values(found[REQUEST_COUNT]) == {("m", "OK"): 5, ("m", "INVALID_ARGUMENT"): 1, ("m", "NOT_FOUND"): 1,
                                            ("m", "FAILED_PRECONDITION"): 1, ("", "INVALID_ARGUMENT"): 1}
    # Only successes are timed; REST's API label is the URL's verb, empty for model status and metadata.
    latency = found[REQUEST_LATENCY]
    assert series(latency) == {("m", "Predict", "GRPC"), ("m", "predict", "REST"), ("m", "", "REST")}
    buckets, total, count = histogram(latency, "m", "Predict", "GRPC")
    assert (total, count) == (251500, 2)
    assert buckets == {le: sum(micros < float(le) for micros in (1500, 250000)) for le in buckets}
    assert (buckets["1102"], buckets["1983.59"], buckets["218591"], buckets["393464"]) == (0, 1, 1, 2)
    assert histogram(latency, "m", "predict", "REST")[1:] == (3000, 1)
    assert histogram(latency, "m", "", "REST")[1:] == (1200, 2)
    text = metrics.prometheus_text().decode("utf-8")
    assert f'\n{REQUEST_COUNT}{{model_name="m",status="OK"}} 5\n' in text
    assert f'\n{REQUEST_LATENCY}_bucket{{model_name="m",API="Predict",entrypoint="GRPC",le="+Inf"}} 2\n' in text


def test_histograms_have_tf_serving_s_buckets_and_count_a_value_equal_to_a_limit_in_the_next_bucket():
    metrics = Metrics()
    metrics.observe_request("m", "Predict", "GRPC", OK, 0.001)
    for count in (1, 2, 5):
        metrics.observe_examples("m", count)
    found = families(metrics)

    latency_buckets = list(histogram(found[REQUEST_LATENCY], "m", "Predict", "GRPC")[0])
    assert len(latency_buckets) == 34
    assert latency_buckets[:6] == ["10", "18", "32.4", "58.32", "104.976", "188.957"]
    assert latency_buckets[-2:] == ["1.47476e+09", "+Inf"]
    examples, total, count = histogram(found[EXAMPLE_COUNTS], "m")
    assert list(examples) == [str(2 ** i) for i in range(15)] + ["+Inf"]
    assert (examples["1"], examples["2"], examples["4"], examples["8"], examples["+Inf"]) == (0, 1, 2, 3, 3)
    assert (total, count) == (8, 3)
    assert values(found[":tensorflow:serving:request_example_count_total"]) == {("m",): 8}


def test_loads_are_counted_by_path_and_status_with_their_time_added_up():
    metrics = Metrics()
    metrics.observe_load("m", 1, "/models/m/1", True, 0.5)
    metrics.observe_load("m", 2, "/models/m/2", False, 0.25)
    metrics.observe_load("m", 2, "/models/m/2", True, 0.125)
    found = families(metrics)
    assert values(found[":tensorflow:cc:saved_model:load_attempt_count"]) == {
        ("/models/m/1", "success"): 1, ("/models/m/2", "fail"): 1, ("/models/m/2", "success"): 1}
    assert values(found[":tensorflow:cc:saved_model:load_latency"]) == {("/models/m/1",): 500000,
                                                                        ("/models/m/2",): 375000}


def test_warmups_are_timed_and_their_records_counted_by_status():
    metrics = Metrics()
    metrics.observe_warmup("/models/m/1", OK, "", 0.1, 3)
    metrics.observe_warmup("/models/m/2", grpc.StatusCode.INVALID_ARGUMENT, "record 2 is not a PredictionLog", 0.01, 1)
    found = families(metrics)
    failed = ("/models/m/2", "INVALID_ARGUMENT: record 2 is not a PredictionLog")
    assert values(found[":tensorflow:serving:model_warmup_records_read"]) == {("/models/m/1", "OK"): 3, failed: 1}
    warmup = found[":tensorflow:serving:model_warmup_latency"]
    assert histogram(warmup, "/models/m/1", "OK")[1:] == (100000, 1)
    assert histogram(warmup, *failed)[1:] == (10000, 1)


def test_each_version_shows_its_current_state():
    metrics = Metrics()
    for version, state in [(1, "START"), (1, "LOADING"), (1, "AVAILABLE"), (2, "START"), (2, "LOADING"),
                           (2, "AVAILABLE"), (1, "UNLOADING"), (1, "END")]:
        metrics.version_state("m", version, state)
    states = values(families(metrics)[":tensorflow:serving:model_version_state"])
    assert {key: value for key, value in states.items() if value} == {("m", "1", "END"): 1, ("m", "2", "AVAILABLE"): 1}
    assert len(states) == 2 * len(monitoring.STATES) == 10
    with pytest.raises(ValueError, match="UNKNOWN"):
        metrics.version_state("m", 1, "UNKNOWN")


def test_label_values_are_escaped():
    metrics = Metrics()
    name = 'a "quoted" \\ name\nover two lines'
    metrics.observe_request(name, "Predict", "GRPC", OK, 0.001)
    assert values(families(metrics)[REQUEST_COUNT]) == {(name, "OK"): 1}


@pytest.mark.parametrize("api, entrypoint", [("Predict", "HTTP"), ("predict", "REST"), ("", "GRPC"), ("Foo", "GRPC")])
def test_an_unknown_api_or_entrypoint_is_refused(api, entrypoint):
    with pytest.raises(ValueError):
        Metrics().observe_request("m", api, entrypoint, OK, 0.001)


def test_concurrent_observations_give_exact_totals():
    metrics, threads, each = Metrics(), 8, 500
    start = threading.Barrier(threads + 1)

    def observe(worker: int) -> None:
        start.wait()
        code = OK if worker % 2 else grpc.StatusCode.UNAVAILABLE
        for _ in range(each):
            metrics.observe_request("m", "Predict", "GRPC", code, 0.001)
            metrics.observe_examples("m", 3)

    def render() -> None:
        start.wait()
        for _ in range(20):
            text_string_to_metric_families(metrics.prometheus_text().decode("utf-8"))

    workers = [threading.Thread(target=observe, args=(i,)) for i in range(threads)] + [threading.Thread(target=render)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    found = families(metrics)
    assert values(found[REQUEST_COUNT]) == {("m", "OK"): threads // 2 * each, ("m", "UNAVAILABLE"): threads // 2 * each}
    assert histogram(found[REQUEST_LATENCY], "m", "Predict", "GRPC")[1:] == (threads // 2 * each * 1000,
                                                                             threads // 2 * each)
    assert histogram(found[EXAMPLE_COUNTS], "m")[1:] == (threads * each * 3, threads * each)


@pytest.mark.parametrize("text, path", [
    ("prometheus_config {\n  enable: true\n}\n", "/monitoring/prometheus/metrics"),
    ('prometheus_config: {\n  enable: true,\n  path: "/metrics"\n}\n', "/metrics"),
    ('prometheus_config { enable: false path: "/metrics" }\n', None),
    ("", None),
])
def test_read_config_gives_the_endpoint_path_the_file_enables(tmp_path, text, path):
    config = tmp_path / "monitoring.config"
    config.write_text(text)
    assert read_config(str(config)) == path


@pytest.mark.parametrize("content, problem", [
    (b"prometheus_config { enable: yes please }\n", "not a TF Serving monitoring config"),
    (b"prometheus { enable: true }\n", "prometheus"),
    (b"\x08\xff\x01", "not UTF-8"),
    (b'prometheus_config { enable: true path: "metrics" }\n', "must start with '/'"),
])
def test_read_config_names_the_file_and_what_is_wrong(tmp_path, content, problem):
    config = tmp_path / "monitoring.config"
    config.write_bytes(content)
    with pytest.raises(MonitoringConfigError, match=re.escape(problem)) as error:
        read_config(str(config))
    assert str(config) in str(error.value)
    assert isinstance(error.value, ValueError) and isinstance(error.value, CnnpipeError)


def test_read_config_of_a_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "missing.config")
    with pytest.raises(MonitoringConfigError, match=re.escape(missing) + ".*cannot read"):
        read_config(missing)
