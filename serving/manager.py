"""Which model versions are served: polls the base paths, loads new versions fully (their warmup requests
replayed) before switching to them, keeps serving the old version when a new one fails to load, and unloads old
versions.

The models are the subdirectories of a serving directory, or those a models.config lists (with
their version policies: latest N, all, specific). A version that fails to load is reported in
the model's status (state END with the error) and tried again only when its files change.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Optional

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from cnnpipe.serving import model_config
from cnnpipe.serving.batching import BatchingOptions
from cnnpipe.serving.errors import ServingError, invalid, not_found
from cnnpipe.serving.monitoring import Metrics
from cnnpipe.serving.servable import Servable

State = get_model_status_pb2.ModelVersionStatus.State
VersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
log = logging.getLogger("cnnpipe.serving")


@dataclasses.dataclass
class VersionStatus:
    state: int
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
    files: tuple = ()  # of a version that failed: retried when they change


def _files(path: str) -> tuple:
    """(name, size, mtime) of every file of a version directory: tells when it changed."""
    return tuple(sorted(
        (os.path.join(root, name), os.stat(os.path.join(root, name)).st_size,
         os.stat(os.path.join(root, name)).st_mtime)
        for root, _, names in os.walk(path) for name in names
    )) if os.path.isdir(path) else ()


def wanted_versions(on_disk: list[int], policy: VersionPolicy) -> list[int]:
    """The versions a version policy serves among those on disk (TF Serving's default: the latest one)."""
    if policy.HasField("all"):
        return on_disk
    if policy.HasField("specific"):
        return [v for v in on_disk if v in set(policy.specific.versions)]
    return on_disk[-max(policy.latest.num_versions, 1):] if on_disk else []


class Model:
    """One served model: its loaded versions and the status of every version it has seen."""

    def __init__(self, config: model_server_config_pb2.ModelConfig):
        self.config = config
        self.loaded: dict[int, Servable] = {}
        self.status: dict[int, VersionStatus] = {}


class ModelManager:
    """Serves the models of a serving directory or a models.config; `poll` brings them up to date."""

    def __init__(self, serving_dir: Optional[str] = None, config_file: Optional[str] = None,
                 batching: Optional[BatchingOptions] = None, warm_up: Optional[Callable[[Servable], int]] = None,
                 metrics: Optional[Metrics] = None, config_poll_seconds: Optional[float] = None):
        """`warm_up` replays a version's warmup requests (returning how many) before it is AVAILABLE; `metrics`
        records each load and each version's state; `config_file` is read again every `config_poll_seconds` (None:
        at every poll; 0: only at the start, as TF Serving's --model_config_file_poll_wait_seconds)."""
        if not serving_dir and not config_file:
            raise ValueError("serve a serving directory or the models a models.config lists")
        self.serving_dir, self.config_file, self.batching = serving_dir, config_file, batching
        self.warm_up, self.metrics, self.config_poll_seconds = warm_up, metrics or Metrics(), config_poll_seconds
        self._config: Optional[list[model_server_config_pb2.ModelConfig]] = None
        self._config_read = 0.0  # when config_file was read (time.monotonic)
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _configs(self) -> list[model_server_config_pb2.ModelConfig]:
        if not self.config_file:
            return list(model_config.scan(self.serving_dir).model_config_list.config)
        interval = self.config_poll_seconds
        due = interval is None or (interval > 0 and time.monotonic() - self._config_read >= interval)
        if self._config is None or due:
            self._config = list(model_config.read(self.config_file).model_config_list.config)
            self._config_read = time.monotonic()
        return self._config

    def poll(self) -> None:
        """Reads the models and their versions once; loads, switches and unloads as needed."""
        configs = {config.name: config for config in self._configs()}
        with self._lock:
            removed = [self._models.pop(name) for name in set(self._models) - set(configs)]
            for name, config in configs.items():
                self._models.setdefault(name, Model(config)).config = config
            models = list(self._models.values())
        for model in removed:
            self._unload(model, set(model.loaded))
        for model in models:
            self._reconcile(model)

    def _reconcile(self, model: Model) -> None:
        on_disk = model_config.version_dirs(model.config.base_path)
        while True:
            candidates = [v for v, path in on_disk.items() if not self._failed(model, v, path)]
            wanted = wanted_versions(candidates, model.config.model_version_policy)
            missing = [v for v in wanted if v not in model.loaded]
            if not missing:
                break
            self._load_version(model, missing[-1], on_disk[missing[-1]])
        self._unload(model, set(model.loaded) - set(wanted))

    def _failed(self, model: Model, version: int, path: str) -> bool:
        status = model.status.get(version)
        if not status or status.error_code == grpc.StatusCode.OK:
            return False
        return status.files == _files(path)

    def _set_status(self, model: Model, version: int, status: VersionStatus) -> None:
        model.status[version] = status
        self.metrics.version_state(model.config.name, version, State.Name(status.state))

    def _load_version(self, model: Model, version: int, path: str) -> None:
        """Loads a version and replays its warmup requests; only then does it serve. A failure leaves it END with
        the error, the versions already loaded serving on."""
        self._set_status(model, version, VersionStatus(State.LOADING))
        start = time.perf_counter()
        try:
            servable = Servable(model.config.name, version, path, self.batching)
            self._warm(servable)
        except Exception as error:  # noqa: BLE001 - any failure to load leaves the old version serving
            message = f"Failed to load {model.config.name} version {version} from {path}: " + \
                      str(error).strip().split("\n")[0]
            log.error("%s", message)
            code = error.code if isinstance(error, ServingError) else \
                grpc.StatusCode.DATA_LOSS if isinstance(error, tf.errors.DataLossError) else grpc.StatusCode.UNKNOWN
            self.metrics.observe_load(model.config.name, version, path, False, time.perf_counter() - start)
            self._set_status(model, version, VersionStatus(State.END, code, message, _files(path)))
            return
        self.metrics.observe_load(model.config.name, version, path, True, time.perf_counter() - start)
        with self._lock:
            model.loaded[version] = servable
            self._set_status(model, version, VersionStatus(State.AVAILABLE))
        log.info("Serving %s version %d from %s", model.config.name, version, path)

    def _warm(self, servable: Servable) -> None:
        """Replays the version's warmup requests, if any; closes the servable when one fails."""
        if self.warm_up is None:
            return
        start = time.perf_counter()
        try:
            records = self.warm_up(servable)
        except Exception as error:
            servable.close()
            code = error.code if isinstance(error, ServingError) else grpc.StatusCode.UNKNOWN
            self.metrics.observe_warmup(servable.path, code, str(error), time.perf_counter() - start, 0)
            raise
        if records:
            self.metrics.observe_warmup(servable.path, grpc.StatusCode.OK, "", time.perf_counter() - start, records)
            log.info("Warmed up %s version %d with %d requests", servable.name, servable.version, records)

    def _unload(self, model: Model, versions: set[int]) -> None:
        for version in versions:
            with self._lock:
                servable = model.loaded.pop(version)
                self._set_status(model, version, VersionStatus(State.END))
            servable.close()  # requests under way keep their reference and finish
            log.info("Unloaded %s version %d", model.config.name, version)

    def start(self, poll_seconds: float) -> None:
        """Polls once now, then every `poll_seconds` in a background thread."""
        self.poll()
        self._thread = threading.Thread(target=self._poll_forever, args=(poll_seconds,), daemon=True, name="poller")
        self._thread.start()

    def _poll_forever(self, poll_seconds: float) -> None:
        reported = ""  # the failure logged last: each is logged once, not at every poll
        while not self._stop.wait(poll_seconds):
            try:
                self.poll()
                reported = ""
            except Exception as error:  # noqa: BLE001 - a bad config or disk error now must not stop serving
                if str(error) != reported:
                    log.error("Polling the models failed; serving what is loaded and trying again: %s", error,
                              exc_info=not isinstance(error, model_config.ModelConfigError))
                reported = str(error)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            models = list(self._models.values())
        for model in models:
            self._unload(model, set(model.loaded))

    def names(self) -> list[str]:
        """The models served, by name."""
        with self._lock:
            return sorted(self._models)

    def _model(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            served = ", ".join(sorted(self._models)) or "none"
            raise not_found(f"Servable not found for request: Latest({name}); the models served here: {served}")
        return model

    def servable(self, name: str, version: Optional[int] = None, label: str = "") -> Servable:
        """The loaded version asked for (the newest when `version` is None); NOT_FOUND otherwise."""
        with self._lock:
            model = self._model(name)
            if label:
                labels = dict(model.config.version_labels)
                if label not in labels:
                    raise invalid(f"Unrecognized servable version label: {label} (model {name} has labels: "
                                  f"{', '.join(sorted(labels)) or 'none'})")
                version = labels[label]
            if version is None:
                if not model.loaded:
                    raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                       f"Servable not found for request: Latest({name}); no version of it is loaded "
                                       f"(see GET /v1/models/{name} for why)")
                return model.loaded[max(model.loaded)]
            if version not in model.loaded:
                loaded = ", ".join(map(str, sorted(model.loaded))) or "none"
                raise not_found(f"Servable not found for request: Specific({name}, {version}); "
                                f"loaded versions: {loaded}")
            return model.loaded[version]

    def status(self, name: str, version: Optional[int] = None) -> dict[int, VersionStatus]:
        """Every known version's status, or that of `version`; NOT_FOUND for an unknown model or version."""
        with self._lock:
            model = self._model(name)
            statuses = dict(model.status)
        if version is None:
            if not statuses:
                raise not_found(f"Could not find any versions of model {name}")
            return statuses
        if version not in statuses:
            raise not_found(f"Could not find version {version} of model {name}")
        return {version: statuses[version]}
