"""The run report (reports/<run id>/index.html) of the shared pipeline run, opened in a real headless Chromium."""

import base64
import os

import pytest
import tensorflow as tf
from PIL import Image
from tfx.utils import path_utils

from conftest import SHARED_TEST, SHARED_TRAIN, headless_chromium
from cnnpipe.cli import main as cli
from cnnpipe.models import best_epoch
from cnnpipe.report import summary, writer
from cnnpipe.pipeline.output_dir import metadata_path

FIGURES = ("Class balance per split", "Confusion matrix of the candidate on the eval split",
           "Training curves: the train and validation splits (TensorBoard logs)",
           "Accuracy under attack against ε, candidate and served")


def test_the_run_report_renders_every_figure_and_agrees_with_the_evaluator(pushed_run, pushed_outputs, tmp_path):
    from selenium.webdriver.common.by import By  # noqa: PLC0415 - only the page tests drive a browser

    assert cli.main(["report", pushed_run.output_dir]) == 0
    result = summary.summarize(metadata_path(pushed_run.output_dir), pushed_run.name)
    directory = writer.report_dir(pushed_run.output_dir, result.run_id)
    with headless_chromium(tmp_path / "chromium", 1200, 900) as driver:
        driver.get("file://" + os.path.join(directory, writer.PAGE_NAME))
        console = driver.get_log("browser")
        fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        tables = {table.get_attribute("id"): [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")]
                                              for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
                  for table in driver.find_elements(By.CSS_SELECTOR, "table[id]")}
        flips = [(item.get_attribute("data-true"), item.get_attribute("data-attacked"),
                  item.find_elements(By.TAG_NAME, "img")[1].get_attribute("src"))
                 for item in driver.find_elements(By.CSS_SELECTOR, ".gallery li")]
        text = driver.find_element(By.TAG_NAME, "body").text
        driver.set_window_size(1200, driver.execute_script("return document.body.scrollHeight") + 100)
        driver.save_screenshot(os.path.join(directory, "screenshot.png"))
    assert console == [] and fetched == []  # no errors, nothing fetched: the page holds all it shows
    assert images and all(rendered for _, rendered in images), images
    assert set(FIGURES) <= {alt for alt, _ in images}

    # The data: StatisticsGen's class counts per split (eval, train, validation), each split's total the slice's; the
    # validation split is held out of the slice's training images by a hash, about 10% of them.
    balance = tables["class-balance"]
    evaluation, train, validation = (sum(int(row[column].replace(",", "")) for row in balance) for column in (1, 2, 3))
    assert (evaluation, train + validation) == (SHARED_TEST, SHARED_TRAIN)
    assert 0.07 < validation / SHARED_TRAIN < 0.13
    assert result.examples == {"train": train, "validation": validation, "eval": evaluation}
    assert best_epoch.kept_line(result.best_epoch) in text  # the epoch the Trainer kept, scored on validation

    # The model: each class's recall, from the report's own predictions, is TFMA's accuracy on that class's slice.
    recall = {row[0]: float(row[2]) for row in tables["per-class"]}
    assert recall == pytest.approx(result.per_class_accuracy, abs=6e-4)

    # The blessing: the clean accuracy against --min-accuracy, with its margin.
    gate = next(row for row in tables["thresholds"] if row[0] == "sparse_categorical_accuracy on the clean images")
    bound = pushed_run.thresholds.min_accuracy
    assert float(gate[1]) == pytest.approx(result.accuracy, abs=1e-4) and gate[2] == f"≥ {bound:.4f}"
    assert float(gate[3]) == pytest.approx(result.accuracy - bound, abs=1e-4) and gate[4] == "passed"

    # The gallery: the model itself classifies each attacked image shown as the page says, not as its true class.
    model = tf.saved_model.load(path_utils.serving_model_path(pushed_outputs["indexed_model"].uri))
    assert flips
    for true_class, attacked_class, source in flips:
        png = base64.b64decode(source.removeprefix("data:image/png;base64,"))
        predicted = model.signatures["predict_image"](images=tf.constant([png]))["class_names"][0].numpy().decode()
        assert predicted == attacked_class != true_class

    assert tables["robustness"][0][:3] == ["none", "0", f"{result.accuracy:.2%}"]
    assert f"pushed to {result.pushed_to}." in text
    with Image.open(os.path.join(directory, "screenshot.png")) as screenshot:
        assert screenshot.height > 2000
