"""A stand-in for the Kubeflow Pipelines API server on 127.0.0.1: answers what kfp's Client asks when it creates an
experiment, a run or a recurring run (KFP's v2beta1 REST API), and records every request with its JSON body."""

import contextlib
from typing import Iterator

from http_sink import Request, http_sink

RESPONSES = {  # (method, path) -> the answer's JSON, as KFP 2.x's API server answers
    ("GET", "/apis/v2beta1/healthz"): {"multi_user": False},
    ("GET", "/apis/v2beta1/experiments"): {"experiments": []},
    ("POST", "/apis/v2beta1/experiments"): {"experiment_id": "experiment-1", "display_name": "cnnpipe"},
    ("POST", "/apis/v2beta1/runs"): {"run_id": "run-1", "display_name": "run", "state": "PENDING"},
    ("POST", "/apis/v2beta1/recurringruns"): {"recurring_run_id": "recurring-1", "display_name": "recurring"},
}


@contextlib.contextmanager
def kfp_api(port: int) -> Iterator[list[Request]]:
    """Serves the API at http://127.0.0.1:`port` while the block runs; yields the requests received."""
    with http_sink(port, lambda method, path: (200, RESPONSES[method, path]) if (method, path) in RESPONSES
                   else (404, {"message": f"no {path}"})) as requests:
        yield requests
