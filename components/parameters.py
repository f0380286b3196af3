"""Execution parameters as the custom components' functions get them, whichever runner runs them."""

import json
from typing import Any


def json_parameter(value: Any) -> Any:
    """A list- or dict-typed parameter (`Parameter[list[str]]`): decoded already by the local runner's launcher, JSON
    text from TFX's Kubeflow V2 container entrypoint (kubeflow_v2_run_executor), which decodes no parameter."""
    return json.loads(value) if isinstance(value, str) else value
