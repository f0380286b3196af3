"""test_kubeflow_run.py's tests of a run of the compiled spec, under the Vertex AI Pipelines contract: a module of its
own, so that pytest-xdist (which keeps a module's tests on one worker) runs it beside the "kfp" contract's run."""

import pytest

from test_kubeflow_run import (Launched, data, launch,  # noqa: F401 - fixtures and tests pytest collects here too
                               test_each_contract_takes_its_own_path_into_the_executors,
                               test_the_exit_step_tells_what_the_run_did,
                               test_every_task_runs_and_the_blessing_names_the_model_it_blessed,
                               test_the_baseline_is_the_model_being_served, test_the_pushed_version_answers_a_real_png,
                               test_the_run_parameters_take_effect)


@pytest.fixture(scope="module", params=["vertex"])
def launched(request, data, tmp_path_factory) -> Launched:  # noqa: F811 - this module's contract
    """The run under the "vertex" contract, the suite's pushed model served before it (its baseline)."""
    return launch(request, data, tmp_path_factory)
