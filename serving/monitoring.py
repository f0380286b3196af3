"""Prometheus metrics: the metrics TF Serving exports, under its names, labels and histogram buckets, for the
endpoint a monitoring config file (TF Serving's MonitoringConfig, text format) enables.

Names are TF's monitoring names with '/' turned to ':' (`:tensorflow:serving:request_count`), counters keep their
name (no `_total` suffix added), and histograms count a value in the first bucket whose limit is above it, as TF's
histograms do, so a dashboard built for TF Serving reads the same series here. Latencies are in microseconds.

What is recorded, as TF Serving records it:
  :tensorflow:serving:request_count{model_name,status}                counter, each request (see observe_request)
  :tensorflow:serving:request_latency{model_name,API,entrypoint}      histogram, each successful request
  :tensorflow:serving:request_example_counts{model}                   histogram, examples per MultiInference request
  :tensorflow:serving:request_example_count_total{model}              counter, the examples in them
  :tensorflow:serving:model_warmup_latency{model_path,status}         histogram, each version's warmup
  :tensorflow:serving:model_warmup_records_read{model_path,status}    counter, warmup records replayed
  :tensorflow:cc:saved_model:load_attempt_count{model_path,status}    counter, each SavedModel load (success/fail)
  :tensorflow:cc:saved_model:load_latency{model_path}                 counter, microseconds spent loading
and one TF Serving does not have:
  :tensorflow:serving:model_version_state{model_name,version,state}   gauge, 1 for a version's state, 0 for the others
"""

import bisect
import dataclasses
import itertools
import threading
from typing import Iterator, Optional

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorflow_serving.apis import get_model_status_pb2

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.serving import model_config

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

GRPC, REST = "GRPC", "REST"
APIS = ("Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata", "GetModelStatus")
MODEL_APIS = ("Predict", "Classify", "Regress")  # counted and timed over gRPC; REST labels them with their verb
LOAD_SUCCESS, LOAD_FAIL = "success", "fail"
STATES = tuple(name for name in get_model_status_pb2.ModelVersionStatus.State.keys() if name != "UNKNOWN")


class MonitoringConfigError(CnnpipeError, ValueError):
    """A monitoring config file that cannot be read or is not a MonitoringConfig."""


def _monitoring_config_class() -> type:
    """TF Serving's MonitoringConfig message (tensorflow_serving-api ships no Python module for it)."""
    file = descriptor_pb2.FileDescriptorProto(name="tensorflow_serving/config/monitoring_config.proto",
                                              package="tensorflow.serving", syntax="proto3")
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()  # its own pool: nothing else can define the same names in it
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()


def read_config(path: str) -> Optional[str]:
    """The Prometheus endpoint path a MonitoringConfig file (text format) enables, or None when it enables none;
    a MonitoringConfigError (a ValueError) names the file and what is wrong with it."""
    config = model_config.read_text_proto(path, MonitoringConfig(), "a TF Serving monitoring config "
                                          "(MonitoringConfig text format)", MonitoringConfigError)
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    if prometheus.path and not prometheus.path.startswith("/"):
        raise MonitoringConfigError(f"{path}: prometheus_config.path {prometheus.path!r} must start with '/', "
                                    f"e.g. {PROMETHEUS_PATH!r}")
    return prometheus.path or PROMETHEUS_PATH


def exponential_limits(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """`count` bucket limits from `scale`, each `growth` times the one before (computed as TF computes them)."""
    limits, limit = [], scale
    for _ in range(count):
        limits.append(limit)
        limit *= growth
    return tuple(limits)


LATENCY_LIMITS = exponential_limits(10, 1.8, 33)  # microseconds, 10 µs to ~20 minutes
EXAMPLE_COUNT_LIMITS = exponential_limits(1, 2, 15)  # 1 to 16384 examples


def _micros(seconds: float) -> int:
    return max(0, int(seconds * 1_000_000))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values))


class _Scalar:
    """A counter or gauge: an integer for each tuple of label values."""

    def __init__(self, name: str, kind: str, labels: tuple[str, ...]):
        self.name, self.kind, self.labels = name, kind, labels
        self.values: dict[tuple[str, ...], int] = {}

    def add(self, values: tuple[str, ...], amount: int) -> None:
        self.values[values] = self.values.get(values, 0) + amount

    def set(self, values: tuple[str, ...], value: int) -> None:
        self.values[values] = value

    def lines(self) -> Iterator[str]:
        yield f"# TYPE {self.name} {self.kind}"
        for values, value in sorted(self.values.items()):
            yield f"{self.name}{{{_labels(self.labels, values)}}} {value}"


@dataclasses.dataclass
class _Cell:
    buckets: list[int]  # values per bucket, the last one above every limit
    total: int = 0


class _Histogram:
    """For each tuple of label values: how many values fell in each bucket, and their sum. A value falls in the first
    bucket whose limit is above it (a value equal to a limit counts in the next bucket up)."""

    def __init__(self, name: str, labels: tuple[str, ...], limits: tuple[float, ...]):
        self.name, self.labels, self.limits = name, labels, limits
        self.le = tuple(f"{limit:.6g}" for limit in limits) + ("+Inf",)
        self.cells: dict[tuple[str, ...], _Cell] = {}

    def add(self, values: tuple[str, ...], value: int) -> None:
        cell = self.cells.setdefault(values, _Cell([0] * (len(self.limits) + 1)))
        cell.buckets[bisect.bisect_right(self.limits, value)] += 1
        cell.total += value

    def lines(self) -> Iterator[str]:
        yield f"# TYPE {self.name} histogram"
        for values, cell in sorted(self.cells.items(), key=lambda item: item[0]):
            labels = _labels(self.labels, values)
            prefix = f"{labels}," if labels else ""
            for le, count in zip(self.le, itertools.accumulate(cell.buckets)):
                yield f'{self.name}_bucket{{{prefix}le="{le}"}} {count}'
            yield f"{self.name}_sum{{{labels}}} {cell.total}"
            yield f"{self.name}_count{{{labels}}} {sum(cell.buckets)}"


class Metrics:
    """The server's metrics, recorded from any thread and rendered in Prometheus's text format; one per server."""

    def __init__(self):
        serving, saved_model = ":tensorflow:serving:", ":tensorflow:cc:saved_model:"
        self._lock = threading.Lock()
        self._request_count = _Scalar(serving + "request_count", "counter", ("model_name", "status"))
        self._request_latency = _Histogram(serving + "request_latency", ("model_name", "API", "entrypoint"),
                                           LATENCY_LIMITS)
        self._example_counts = _Histogram(serving + "request_example_counts", ("model",), EXAMPLE_COUNT_LIMITS)
        self._example_count_total = _Scalar(serving + "request_example_count_total", "counter", ("model",))
        self._warmup_latency = _Histogram(serving + "model_warmup_latency", ("model_path", "status"), LATENCY_LIMITS)
        self._warmup_records = _Scalar(serving + "model_warmup_records_read", "counter", ("model_path", "status"))
        self._load_attempts = _Scalar(saved_model + "load_attempt_count", "counter", ("model_path", "status"))
        self._load_latency = _Scalar(saved_model + "load_latency", "counter", ("model_path",))
        self._version_state = _Scalar(serving + "model_version_state", "gauge", ("model_name", "version", "state"))
        self._families = sorted((self._request_count, self._request_latency, self._example_counts,
                                 self._example_count_total, self._warmup_latency, self._warmup_records,
                                 self._load_attempts, self._load_latency, self._version_state),
                                key=lambda family: family.name)

    def observe_request(self, model: str, api: str, entrypoint: str, code: grpc.StatusCode, seconds: float) -> None:
        """Records a finished request to `api` (one of APIS, or "" for a REST request whose path names none) through
        `entrypoint` (GRPC or REST). Counts it in request_count by status, and times it in request_latency when it
        succeeded. Over gRPC only Predict, Classify and Regress are recorded; over REST every request is, its API
        label being the URL's verb ("predict", "classify", "regress"), or "" for model metadata and status."""
        if entrypoint not in (GRPC, REST):
            raise ValueError(f"entrypoint must be {GRPC!r} or {REST!r}, not {entrypoint!r}")
        if api not in APIS and not (entrypoint == REST and api == ""):
            raise ValueError(f"unknown API {api!r}; one of {', '.join(APIS)}")
        if entrypoint == GRPC and api not in MODEL_APIS:
            return
        label = api if entrypoint == GRPC else api.lower() if api in MODEL_APIS else ""
        with self._lock:
            if code == grpc.StatusCode.OK:
                self._request_latency.add((model, label, entrypoint), _micros(seconds))
            self._request_count.add((model, code.name), 1)

    def observe_examples(self, model: str, count: int) -> None:
        """Records the number of examples a MultiInference request ran the model on."""
        with self._lock:
            self._example_counts.add((model,), count)
            self._example_count_total.add((model,), count)

    def observe_warmup(self, path: str, code: grpc.StatusCode, message: str, seconds: float, records: int) -> None:
        """Records the warmup of the version at `path` (one that has warmup requests): its time and the records it
        replayed, by status ("OK", or the error's code and message as in "INVALID_ARGUMENT: ...")."""
        status = "OK" if code == grpc.StatusCode.OK else f"{code.name}: {message}"
        with self._lock:
            self._warmup_latency.add((path, status), _micros(seconds))
            self._warmup_records.add((path, status), records)

    def observe_load(self, model: str, version: int, path: str, ok: bool, seconds: float) -> None:
        """Records an attempt to load `model` `version` from the SavedModel at `path`; TF's load metrics are labelled
        with the path alone. load_latency adds up the time of every attempt, failed ones included."""
        with self._lock:
            self._load_attempts.add((path, LOAD_SUCCESS if ok else LOAD_FAIL), 1)
            self._load_latency.add((path,), _micros(seconds))

    def version_state(self, model: str, version: int, state: str) -> None:
        """Sets the state (one of STATES: ModelVersionStatus's states) of `model` `version` in model_version_state:
        1 for that state, 0 for the others. TF Serving exports no metric for this; the name is this server's own."""
        if state not in STATES:
            raise ValueError(f"unknown model version state {state!r}; one of {', '.join(STATES)}")
        with self._lock:
            for name in STATES:
                self._version_state.set((model, str(version), name), int(name == state))

    def prometheus_text(self) -> bytes:
        """All metrics in Prometheus's text exposition format 0.0.4, a "# TYPE" line heading each, sorted by name."""
        with self._lock:
            lines = [line for family in self._families for line in family.lines()]
        return ("\n".join(lines) + "\n").encode("utf-8")
