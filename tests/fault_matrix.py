"""The fault matrix: every test in tests/faults/ is one kind of bad input or fault, on real images.

Mark a test (or a parametrized case) with `@pytest.mark.fault(stage, kind, expected)`; the test
calls the `observed` fixture with what actually happened (an exit code, the message, what is left
on disk). At the end of the session the matrix is printed (stage, kind, expected, observed), and
with FAULT_MATRIX=path it is also written into that Markdown file between the markers below.
"""

import os
import re
from typing import Callable

import pytest

BEGIN, END = "<!-- fault matrix: begin -->", "<!-- fault matrix: end -->"
_ROWS: list[dict] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(stage, kind, expected): one row of the fault matrix")


@pytest.fixture
def observed(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Records what the fault led to, for the matrix's `observed` column."""
    return lambda text: request.node.user_properties.append(("observed", " ".join(str(text).split())))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Puts the test's row on its report (under xdist the report travels from the worker to the controller)."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is None or (report.when != "call" and not report.failed and not report.skipped):
        return
    stage, kind, expected = marker.args
    seen = [text for key, text in item.user_properties if key == "observed"]
    if report.failed:
        reason = str(call.excinfo.value).strip().splitlines()[0] if call.excinfo else report.when
        result = f"FAILED: {reason[:200]}"
    elif report.skipped:
        result = "skipped"
    else:
        result = "; ".join(seen) or "as expected"
    report.user_properties.append(("fault", {"stage": stage, "kind": kind, "expected": expected,
                                             "observed": result, "passed": report.passed,
                                             "order": item.session.items.index(item)}))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _ROWS.extend(row for key, row in report.user_properties if key == "fault")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def matrix_markdown() -> str:
    lines = ["| # | stage | kind | expected | observed | |", "|---:|---|---|---|---|---|"]
    for number, row in enumerate(_ROWS, 1):
        mark = "✓" if row["passed"] else "✗"
        lines.append(f"| {number} | {row['stage']} | {_cell(row['kind'])} | {_cell(row['expected'])} | "
                     f"{_cell(row['observed'])} | {mark} |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ROWS:
        return
    _ROWS.sort(key=lambda row: row["order"])  # collection order: the workers finish in any order
    passed = sum(row["passed"] for row in _ROWS)
    terminalreporter.section(f"fault matrix: {passed} of {len(_ROWS)} faults handled as expected")
    for number, row in enumerate(_ROWS, 1):
        mark = "ok " if row["passed"] else "BAD"
        terminalreporter.write_line(f"{number:>3} {mark} {row['stage']:<10} {row['kind']}")
        terminalreporter.write_line(f"{'':>8}expected: {row['expected']}")
        terminalreporter.write_line(f"{'':>8}observed: {row['observed']}")
    target = os.environ.get("FAULT_MATRIX")
    if target:
        text = open(target, encoding="utf-8").read() if os.path.exists(target) else f"{BEGIN}\n{END}\n"
        table = f"{BEGIN}\n{matrix_markdown()}\n{END}"
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        text = pattern.sub(lambda _: table, text) if pattern.search(text) else text + "\n" + table + "\n"
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
        terminalreporter.write_line(f"fault matrix written to {target}")
