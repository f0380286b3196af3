"""Component progress of a local run, read from ML Metadata while the run goes on.

The orchestrator records every component's execution in MLMD (its node, its state, when it was
created and last updated), so watching the store needs no knowledge of TFX's log messages.
"""

import datetime
import threading
from typing import Optional, TextIO

from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from cnnpipe.pipeline import metadata

Execution = metadata_store_pb2.Execution
DONE = {Execution.COMPLETE: "✓", Execution.CACHED: "✓", Execution.FAILED: "✗", Execution.CANCELED: "✗"}
NOTE = {Execution.CACHED: " (cached)", Execution.FAILED: " failed", Execution.CANCELED: " canceled"}


class ComponentProgress:
    """Prints each component of one run as it starts and finishes (wall time; whether cached or failed).

    Use as a context manager around the run: it polls the store in a thread every `poll_seconds`, and
    once more at the end. `seconds` maps each finished component to its wall time in this run.
    """

    def __init__(self, connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str, out: TextIO,
                 poll_seconds: float = 0.5):
        self._store = metadata_store.MetadataStore(connection_config)
        self._pipeline, self._out, self._poll_seconds = pipeline_name, out, poll_seconds
        self.seconds: dict[str, float] = {}
        self._started: set[int] = set()
        self._components: dict[int, str] = {}  # execution id -> component id
        self._first_id = 1 + max((e.id for e in self._executions()), default=0)  # older runs' are not shown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="progress")

    def __enter__(self) -> "ComponentProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._report()

    def _executions(self) -> list[metadata_store_pb2.Execution]:
        return metadata.pipeline_executions(self._store, self._pipeline)

    def _component(self, execution_id: int) -> str:
        if execution_id not in self._components:
            self._components[execution_id] = metadata.component_of(self._store, execution_id, self._pipeline)
        return self._components[execution_id]

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self._report()
            except mlmd_errors.StatusError:  # the store is busy with the run's own writes: look again soon
                pass

    def _report(self) -> None:
        for execution in sorted(self._executions(), key=lambda e: e.id):
            if execution.id < self._first_id or self._component(execution.id) in self.seconds:
                continue
            name = self._component(execution.id)
            if execution.last_known_state in DONE:
                self._finished(name, execution)
            elif execution.id not in self._started:
                self._started.add(execution.id)
                self._print(f"▶ {name}", execution.create_time_since_epoch)

    def _finished(self, name: str, execution: metadata_store_pb2.Execution) -> None:
        seconds = metadata.seconds_of(execution)
        self.seconds[name] = seconds
        if execution.id not in self._started and execution.last_known_state != Execution.CACHED:
            self._print(f"▶ {name}", execution.create_time_since_epoch)  # it ran between two looks
        state = execution.last_known_state
        self._print(f"{DONE[state]} {name} {seconds:.1f}s{NOTE.get(state, '')}", execution.last_update_time_since_epoch)

    def _print(self, text: str, milliseconds: Optional[int]) -> None:
        when = datetime.datetime.fromtimestamp(milliseconds / 1000) if milliseconds else datetime.datetime.now()
        print(f"{when:%H:%M:%S} {text}", file=self._out, flush=True)
