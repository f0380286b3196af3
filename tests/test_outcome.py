"""Posting a run's outcome to a webhook: tried again after a failure, bounded in time, never failing the run."""

import json
import time

from conftest import free_ports
from http_sink import http_sink
from cnnpipe.report import outcome

PUSHED = outcome.Outcome(pipeline="fashion", run_id="2026-12-07T17:00:00", status="pushed",
                         summary="pushed version 3", started="2026-12-07T17:00:00", seconds=61.5, version="3",
                         accuracy=0.9, precision_at_10=0.88)


def test_the_outcome_is_posted_as_json():
    port = free_ports(1)[0]
    with http_sink(port) as requests:
        said = outcome.notify(f"http://127.0.0.1:{port}/hook", PUSHED)
    assert said == f"Notified http://127.0.0.1:{port}/hook: 200."
    assert requests == [("POST", "/hook", json.loads(PUSHED.to_json()))]
    assert requests[0][2]["status"] == "pushed" and requests[0][2]["version"] == "3"


def test_a_webhook_that_fails_for_a_while_is_tried_again():
    port = free_ports(1)[0]
    answers = iter([(503, {}), (429, {}), (200, {})])
    with http_sink(port, lambda method, path: next(answers)) as requests:
        said = outcome.notify(f"http://127.0.0.1:{port}/hook", PUSHED, backoff=0.01)
    assert said.endswith(": 200.") and len(requests) == 3


def test_a_webhook_that_refuses_the_post_is_not_tried_again_and_the_run_goes_on():
    port = free_ports(1)[0]
    with http_sink(port, lambda method, path: (404, {})) as requests:
        said = outcome.notify(f"http://127.0.0.1:{port}/hook", PUSHED, backoff=0.01)
    assert len(requests) == 1
    assert said == (f"Could not notify http://127.0.0.1:{port}/hook (404 Not Found); the run's outcome is in its "
                    "outcome.json.")


def test_an_unreachable_webhook_costs_at_most_its_attempts():
    url = f"http://127.0.0.1:{free_ports(1)[0]}/hook"  # nothing listens
    started = time.monotonic()
    said = outcome.notify(url, PUSHED, attempts=3, timeout=1, backoff=0.05)
    assert time.monotonic() - started < 3 * 1 + 0.05 + 0.1 + 1
    assert said.startswith(f"Could not notify {url} (") and "Connection refused" in said
