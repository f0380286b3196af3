"""`cnnpipe canary` on real traffic: the images the stable version answered (logged by `cnnpipe serve`) replayed
through it and the canary; a copy of stable passes, a canary trained on shuffled labels fails, and labelled images
give both versions' accuracy."""

import base64
import csv
import os
import shutil

import numpy as np
import pytest
import requests

from conftest import (cnnpipe, encode, fashion_mnist, headless_chromium, running_server, train_and_export,
                      versions)
from cnnpipe.monitoring import canary, logged_span
from cnnpipe.serving import model_config, rollout

MODEL, IMAGES = "fashion", 40


@pytest.fixture(scope="module")
def traffic(pushed_run, tmp_path_factory) -> dict:
    """Version 1 (the shared run's model) stable, 2 its copy, 3 a LeNet-5 trained on shuffled labels; stable served
    with --log-requests and sent IMAGES real t10k images by label."""
    root = tmp_path_factory.mktemp("canary")
    serving_dir = root / "serving"
    pushed = os.path.join(pushed_run.serving_base, versions(pushed_run.serving_base)[-1])
    for version in (1, 2):
        shutil.copytree(pushed, serving_dir / MODEL / str(version))
    images, labels = fashion_mnist("train", 600)
    shuffled = np.random.default_rng(0).permutation(labels)
    shutil.copytree(train_and_export(str(root / "shuffled"), images, shuffled, epochs=2), serving_dir / MODEL / "3")
    model_config.write(str(serving_dir))
    rollout.promote(str(serving_dir), MODEL, 1)
    rollout.push(str(serving_dir), MODEL, 2)
    test_images, test_labels = fashion_mnist("t10k", IMAGES)
    encoded = [encode(pixels) for pixels in test_images]
    body = {"signature_name": "predict_image", "instances": [{"b64": base64.b64encode(e).decode()} for e in encoded]}
    logs = root / "requests"
    with running_server(None, "--model-config", str(serving_dir / model_config.MODELS_CONFIG), "--log-requests",
                        str(logs)) as server:
        answer = requests.post(f"{server.rest}/v1/models/{MODEL}/labels/stable:predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
    sheet = logged_span.label_sheet(str(logs), str(root / "sheet"))
    truth = {logged_span.image_id(image): pushed_run.class_names[label] for image, label in zip(encoded, test_labels)}
    with open(sheet, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    with open(sheet, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "class_name": truth[row["image"]]} for row in rows)
    return dict(root=root, serving_dir=str(serving_dir), logs=str(logs), sheet=sheet)


def test_a_copy_of_stable_agrees_everywhere_and_passes(traffic):
    report = canary.compare(traffic["logs"], traffic["serving_dir"], MODEL, labels_csv=traffic["sheet"])
    assert (report.stable, report.canary, report.images, report.labelled) == (1, 2, IMAGES, IMAGES)
    assert report.agreement == 1.0 and report.flips == {} and report.search_overlap == 1.0
    assert report.accuracy["stable"] == report.accuracy["canary"] > 0.3  # a barely trained model, well above chance
    assert set(report.latency_ms) == {"stable", "canary"} and report.passed
    assert report.format().endswith("Passed.")


@pytest.fixture(scope="module")
def shuffled_check(traffic) -> tuple:
    """The check of the canary trained on shuffled labels, in this process and by `cnnpipe canary`."""
    rollout.push(traffic["serving_dir"], MODEL, 3)
    try:
        report = canary.compare(traffic["logs"], traffic["serving_dir"], MODEL, labels_csv=traffic["sheet"])
        result = cnnpipe("canary", "--requests", traffic["logs"], "--serving-dir", traffic["serving_dir"],
                         "--model-name", MODEL, "--max-latency-ratio", "100", "--labels", traffic["sheet"],
                         cwd=traffic["root"])
    finally:
        rollout.push(traffic["serving_dir"], MODEL, 2)
    return report, result


def test_a_canary_trained_on_shuffled_labels_fails_naming_why(shuffled_check):
    report, result = shuffled_check
    assert report.canary == 3 and report.agreement < 0.5 and sum(report.flips.values()) == round(
        (1 - report.agreement) * IMAGES)
    assert report.search_overlap is None  # the canary has no search signature
    assert report.accuracy["canary"] < report.accuracy["stable"]
    assert any(failure.startswith("top-1 agreement") for failure in report.failures)
    assert any(failure.startswith("accuracy on labelled images") for failure in report.failures)
    assert result.returncode == 2, result.stderr
    assert "Canary fashion version 3 against stable version 1, on 40 logged images:" in result.stdout
    assert "Failed: top-1 agreement" in result.stdout


def test_the_check_is_a_page_that_renders_in_a_browser(shuffled_check, tmp_path):
    from selenium.webdriver.common.by import By  # noqa: PLC0415 - only the page tests drive a browser

    _, result = shuffled_check
    page = next(line for line in result.stdout.splitlines() if line.startswith("Page: ")).removeprefix("Page: ")
    assert os.path.basename(page) == "canary-fashion-1-3.html"
    with headless_chromium(tmp_path / "chromium") as driver:
        driver.get("file://" + page)
        console = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        verdict = driver.find_element(By.ID, "verdict")
        verdict = (verdict.get_attribute("class"), verdict.text)
        tables = {table.get_attribute("id"): [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                                              for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
                  for table in driver.find_elements(By.CSS_SELECTOR, "table[id]")}
    assert console == []
    assert images == [["Latency, stable and canary", True]]
    assert verdict[0] == "failed" and verdict[1].startswith("Failed: top-1 agreement")
    summary = dict(tables["summary"])
    agreement = next(line for line in result.stdout.splitlines() if "top-1 agreement" in line).split()[-1]
    assert summary["logged images"] == str(IMAGES) and summary["top-1 agreement"] == agreement
    assert [row[0] for row in tables["latency"]] == ["stable", "canary"]
    assert sum(int(row[2]) for row in tables["flips"]) == round(IMAGES * (1 - float(agreement.rstrip("%")) / 100))


def test_without_labels_or_traffic_it_says_what_is_missing(traffic, tmp_path):
    shutil.copytree(os.path.join(traffic["serving_dir"], MODEL), tmp_path / "serving" / MODEL)
    model_config.write(str(tmp_path / "serving"), model_config.scan(str(tmp_path / "serving")))
    with pytest.raises(Exception, match="has no stable and canary labels .it has none.; cnnpipe promote"):
        canary.compare(traffic["logs"], str(tmp_path / "serving"), MODEL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no logged images here"):
        canary.compare(str(tmp_path / "empty"), traffic["serving_dir"], MODEL)
