"""Request batching, as TF Serving's `--enable_batching` does: requests for the same signature
that arrive within `batch_timeout_micros` are stacked into one call of up to `max_batch_size`
examples, and the outputs are split back. A batch that fails is re-run request by request, so a
bad request never fails the others.

A batch waits for others to join only while another batch is running: an idle server answers a
lone request at once, a busy one stacks the requests that arrive meanwhile.
"""

import collections
import dataclasses
import threading
import time
from typing import Callable, ClassVar

import numpy as np

from cnnpipe.core.options import option

Run = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    GROUP: ClassVar[str] = "batching (as TF Serving's --enable_batching)"

    max_batch_size: int = option(32, "examples in one call", GROUP, metavar="N")
    batch_timeout_micros: int = option(1000, "how long the first request of a batch waits for others", GROUP,
                                       metavar="US")
    # batches run at once; one batch already keeps TensorFlow's threads busy
    num_batch_threads: int = option(1, "batches run at once", GROUP, metavar="N")

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.batch_timeout_micros < 0 or self.num_batch_threads < 1:
            raise ValueError(f"batching options must be positive: {self}")


class _Task:
    def __init__(self, signature: str, inputs: dict[str, np.ndarray]):
        self.signature, self.inputs = signature, inputs
        self.rows = len(next(iter(inputs.values())))
        self.key = (signature,) + tuple((name, value.dtype.str, value.shape[1:])
                                        for name, value in sorted(inputs.items()))
        self.enqueued = time.monotonic()
        self._outputs: dict[str, np.ndarray] = {}
        self._error: Exception | None = None
        self._unanswered = threading.Lock()  # held until `answer`: `wait` blocks on it (cheaper than an Event)
        self._unanswered.acquire()

    def answer(self, outputs: dict[str, np.ndarray] | None = None, error: Exception | None = None) -> None:
        self._outputs, self._error = outputs or {}, error
        self._unanswered.release()

    def wait(self) -> dict[str, np.ndarray]:
        self._unanswered.acquire()
        if self._error:
            raise self._error
        return self._outputs


class Batcher:
    """Stacks concurrent requests of one servable; `submit` blocks until its request is answered."""

    def __init__(self, run: Run, options: BatchingOptions):
        self._run, self._options = run, options
        self._queue: collections.deque[_Task] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._running = 0  # batches being answered
        self._threads = [threading.Thread(target=self._work, daemon=True, name="batcher")
                         for _ in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        task = _Task(signature, inputs)
        if task.rows >= self._options.max_batch_size:  # a full batch already
            return self._run(signature, inputs)
        with self._ready:
            if self._closed:  # the version was unloaded meanwhile: answer directly
                return self._run(signature, inputs)
            self._queue.append(task)
            self._ready.notify()
        return task.wait()

    def close(self) -> None:
        """Answers what is queued, then stops the threads."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _take_batch(self) -> list[_Task]:
        """Waits for the oldest task's batch to fill or time out; returns its tasks ([] once closed and empty)."""
        timeout = self._options.batch_timeout_micros / 1e6
        with self._ready:
            while True:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return []
                first = self._queue[0]
                same = [task for task in self._queue if task.key == first.key]
                waited = time.monotonic() - first.enqueued
                full = sum(t.rows for t in same) >= self._options.max_batch_size
                if full or not self._running or waited >= timeout or self._closed:
                    break
                self._ready.wait(timeout - waited)
            batch, rows = [], 0
            for task in same:
                if rows + task.rows > self._options.max_batch_size:
                    break
                batch.append(task)
                rows += task.rows
            for task in batch:
                self._queue.remove(task)
            self._running += 1
            return batch

    def _work(self) -> None:
        while batch := self._take_batch():
            try:
                self._answer(batch)
            finally:
                with self._ready:
                    self._running -= 1
                    self._ready.notify_all()

    def _answer(self, batch: list[_Task]) -> None:
        if len(batch) > 1:
            try:
                stacked = {name: np.concatenate([t.inputs[name] for t in batch]) for name in batch[0].inputs}
                outputs = self._run(batch[0].signature, stacked)
            except Exception:  # noqa: BLE001 - one request spoiled the batch: answer each on its own below
                pass
            else:
                start = 0
                for task in batch:
                    task.answer({name: value[start:start + task.rows] for name, value in outputs.items()})
                    start += task.rows
                return
        for task in batch:
            try:
                outputs = self._run(task.signature, task.inputs)
            except Exception as error:  # noqa: BLE001 - handed to the request's own thread
                task.answer(error=error)
            else:
                task.answer(outputs)
