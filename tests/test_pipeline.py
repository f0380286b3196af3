"""End to end: the whole TFX pipeline on a real Fashion-MNIST slice (the shared run of conftest.py: 2,000 train,
300 test, 1 epoch of batches of 32), read back, and run again on a copy of its outputs."""

import dataclasses
import gzip
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from conftest import (SHARED_TEST as TEST, SHARED_TRAIN as TRAIN, encode, fashion_mnist, free_ports,
                      headless_chromium)
from cnnpipe.core.errors import DataValidationError
from cnnpipe.components.blessing import evaluation_results
from cnnpipe.components.blessing.evaluation_results import metrics_by_slice
from cnnpipe.components.ingestion.formats import make_example
from cnnpipe.components.blessing import eval_config
from cnnpipe.runners import local_runner
from cnnpipe.pipeline import metadata
from cnnpipe.report import run_facts, summary, writer
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.components.blessing.thresholds import Thresholds
from cnnpipe.core.names import SEARCH_ASSETS
from cnnpipe.models.catalog import CLASS_WEIGHT
from cnnpipe.retrieval import items, rephotographs


@pytest.fixture
def run_copy(pushed_run, tmp_path) -> PipelineConfig:
    """The shared run's settings with a copy of its outputs (metadata, artifacts, served versions) to run the
    pipeline again on; the copied metadata still names the shared run's artifacts, which nothing changes."""
    shutil.copytree(pushed_run.output_dir, tmp_path / "out")
    return dataclasses.replace(pushed_run, output_dir=str(tmp_path / "out"))


def served_versions(config: PipelineConfig) -> list[str]:
    return sorted(os.listdir(config.serving_base))


def test_every_component_recorded_its_outputs_in_mlmd(pushed_outputs):
    outputs = pushed_outputs
    expected = {
        "examples", "statistics", "schema", "anomalies", "transform_graph", "transformed_examples",
        "model", "model_run", "indexed_model", "evaluation", "blessing", "pushed_model",
    }
    assert expected <= set(outputs)
    for artifact in outputs.values():
        assert tf.io.gfile.exists(artifact.uri), artifact.uri


def test_pushed_model_classifies_the_real_test_slice(pushed_run):
    versions = served_versions(pushed_run)
    assert len(versions) == 1 and versions[0].isdigit()
    model = tf.saved_model.load(os.path.join(pushed_run.serving_base, versions[0]))
    images, labels = fashion_mnist("t10k", TEST)
    examples = []
    for index, (pixels, label) in enumerate(zip(images, labels)):
        examples.append(make_example(encode(pixels), int(label), "", f"client:{index}", 28, 28))
    outputs = model.signatures["serving_default"](examples=tf.constant(examples))
    class_ids = outputs["class_ids"].numpy()
    assert outputs["probabilities"].shape == (TEST, 10)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(class_ids == labels) >= 0.6
    names = [name.decode() for name in outputs["class_names"].numpy()]
    assert names == [FASHION_MNIST.class_names[i] for i in class_ids]


def test_summary_reports_accuracy_blessing_and_push(pushed_run):
    result = summary.summarize(local_runner.metadata_path(pushed_run.output_dir), pushed_run.name)
    assert result.accuracy >= 0.5 and result.blessed
    assert set(result.per_class_accuracy) == set(FASHION_MNIST.class_names)
    assert result.pushed_to == os.path.join(pushed_run.serving_base, served_versions(pushed_run)[0])
    assert "Blessed: yes" in result.format() and result.pushed_to in result.format()
    search = result.retrieval  # the EmbeddingIndex's figures: the training split as catalog, eval images as queries
    assert (search["catalog_items"], search["queries"]) == (TRAIN, TEST)
    assert search["precision_at_10"] > 0.5 and 0 < search["map_at_100"] <= 1  # 10 classes: chance is 0.1
    assert set(search["per_class"]) == set(FASHION_MNIST.class_names)
    assert search["ann_recall_at_10"] >= 0.9 and search["build_seconds"] > 0 and search["index_bytes_per_item"] > 0
    assert f"precision@10 {search['precision_at_10']:.3f}" in result.format()



def test_the_search_figures_on_the_item_itself_agree_with_the_pushed_search_signature(pushed_run):
    """EmbeddingIndex's instance recall (exact search, its own sample) against the pushed model's
    `search` signature, as a client calls it, on 200 other catalog items photographed again: the item among the ten
    neighbours it returns."""
    result = summary.summarize(local_runner.metadata_path(pushed_run.output_dir), pushed_run.name)
    figures = result.retrieval
    assert figures["instance_queries"] == 1000 and 1 <= figures["instance_median_rank"] <= TRAIN
    assert 0 <= figures["instance_recall_at_1"] <= figures["instance_recall_at_10"] <= 1
    assert figures["ties_with_first"] >= 1
    assert f"recall@10 {figures['instance_recall_at_10']:.3f}" in result.format()
    version = os.path.join(pushed_run.serving_base, served_versions(pushed_run)[0])
    table = items.read(os.path.join(version, SEARCH_ASSETS, items.FILE))
    chosen = np.random.default_rng(7).permutation(len(table))[:200]
    photos = rephotographs.second_photos([table.thumbnails[i] for i in chosen], seed=7)  # 28x28: the originals
    found = tf.saved_model.load(version).signatures["search"](images=tf.constant(photos))["neighbor_sources"].numpy()
    recall = np.mean([table.sources[i].encode() in row for i, row in zip(chosen, found)])
    assert recall == pytest.approx(figures["instance_recall_at_10"], abs=0.12)  # two samples: 3 standard errors


def test_the_trainer_reads_every_example_once_per_epoch_and_mixes_examples_stored_by_class(pushed_outputs, tmp_path):
    """The Trainer's input (TFXIO, then a shuffle of the whole split): Transform's training examples, rewritten
    sorted by label, reach the model mixed; without shuffling, the first batch is one class."""
    import tensorflow_transform as tft  # noqa: PLC0415
    from cnnpipe.core import features  # noqa: PLC0415
    from cnnpipe.models import trainer  # noqa: PLC0415

    split = os.path.join(pushed_outputs["transformed_examples"].uri, "Split-train", "*")
    records = list(tf.data.TFRecordDataset(tf.io.gfile.glob(split), compression_type="GZIP").as_numpy_iterator())
    label = lambda record: tf.train.Example.FromString(record).features.feature[features.LABEL_XF].int64_list.value[0]  # noqa: E731
    by_class = str(tmp_path / "by_class.gz")
    with tf.io.TFRecordWriter(by_class, "GZIP") as writer:
        for record in sorted(records, key=label):
            writer.write(record)
    tft_output = tft.TFTransformOutput(pushed_outputs["transform_graph"].uri)
    shuffled, in_order = (trainer.input_fn(trainer.tf_example_files(), [by_class], tft_output, 32, shuffle=shuffle)
                          for shuffle in (True, False))
    epochs = [np.concatenate([labels for _, labels in shuffled.as_numpy_iterator()]) for _ in range(2)]
    assert [len(epoch) for epoch in epochs] == [len(records), len(records)] and len(records) > 0.8 * TRAIN
    assert np.array_equal(np.sort(epochs[0]), np.sort([label(record) for record in records]))
    assert len(set(epochs[0][:32])) >= 8 and not np.array_equal(epochs[0], epochs[1])
    assert len(set(next(iter(in_order))[1].numpy())) == 1


def test_two_workers_train_one_model_that_the_evaluator_blesses(pushed_run, pushed_outputs, tmp_path):
    examples = pushed_outputs["transformed_examples"].uri
    training = dataclasses.replace(pushed_run.training_config(FASHION_MNIST.class_names), strategy="multi_worker")
    fn_args = tmp_path / "fn_args.json"
    fn_args.write_text(json.dumps({
        "train_files": [os.path.join(examples, "Split-train", "*")],
        "eval_files": [os.path.join(examples, "Split-validation", "*")],  # the Trainer's eval split
        "transform_graph_path": pushed_outputs["transform_graph"].uri,
        "serving_model_dir": str(tmp_path / "model"),
        "model_run_dir": str(tmp_path / "run"),
        "custom_config": dataclasses.asdict(training),
    }))
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "cnnpipe.models.worker", str(fn_args)],
            env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    logs = [worker.communicate(timeout=900)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "2 replica(s)" in logs[0]
    assert (tmp_path / "model" / "saved_model.pb").exists()

    # As the Evaluator does: the first run's blessed model is the baseline.
    config = tfma.utils.update_eval_config_with_defaults(
        eval_config.eval_config(Thresholds(min_accuracy=0.5, max_accuracy_drop=0.2)), has_baseline=True
    )
    candidate, baseline = (
        tfma.default_eval_shared_model(path, model_name=name, eval_config=config)
        for name, path in [
            (tfma.CANDIDATE_KEY, str(tmp_path / "model")),
            (tfma.BASELINE_KEY, os.path.join(pushed_outputs["model"].uri, "Format-Serving")),
        ]
    )
    tfma.run_model_analysis(
        eval_shared_model=[candidate, baseline],
        eval_config=config,
        data_location=os.path.join(pushed_outputs["examples"].uri, "Split-eval", "*"),
        output_path=str(tmp_path / "evaluation"),
    )
    assert tfma.load_validation_result(str(tmp_path / "evaluation")).validation_ok


def test_second_run_with_the_same_inputs_reuses_the_cache_and_pushes_nothing_new(run_copy):
    before = served_versions(run_copy)
    progress = io.StringIO()
    local_runner.run(run_copy, out=progress)
    cached = {line.split()[2] for line in progress.getvalue().splitlines() if "(cached)" in line}
    # The Evaluator runs again: its baseline is now the model the first run blessed.
    assert {"ImageExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Trainer"} <= cached
    assert served_versions(run_copy) == before


def test_tune_runs_the_tuner_within_its_budget_and_the_trainer_trains_its_best_once(run_copy):
    """--tune 8 --tune-minutes 0.1: TFX's Tuner runs fewer trials than 8 in its 6 seconds, each scored on the
    validation split; the Trainer builds the best trial's width; the summary names the trials; run again, the Tuner
    and the Trainer come from the cache."""
    tuned = run_copy.with_options(tune=8, tune_minutes=0.1)
    local_runner.run(tuned, out=io.StringIO())
    path = local_runner.metadata_path(run_copy.output_dir)
    result = summary.summarize(path, run_copy.name)
    assert 1 <= len(result.trials) < 8
    assert [trial["score"] for trial in result.trials] == sorted((t["score"] for t in result.trials), reverse=True)
    best = result.trials[0]
    model = tf.saved_model.load(os.path.join(metadata.run_outputs(path, run_copy.name)[1]["model"].uri,
                                             "Format-Serving"))
    conv1 = next(variable for variable in model.variables if variable.name == "conv1/kernel:0")
    assert conv1.shape[-1] == round(6 * best["width"])
    line = (f"Tuned over {len(result.trials)} trial(s): the best, precision@10 on the validation split "
            f"{best['score']:.4f}")
    assert line in result.format()
    page = writer.write(run_facts.read(path, run_copy.name, result),
                        writer.report_dir(run_copy.output_dir, result.run_id))[0]
    with headless_chromium(run_copy.output_dir + "-chromium") as driver:  # the run's report lists the trials
        driver.get("file://" + page)
        rows = [[cell.text for cell in row.find_elements("css selector", "td")]
                for row in driver.find_elements("css selector", "table#trials tbody tr")]
        assert line in driver.find_element("tag name", "body").text
    assert [row[:2] for row in rows] == [[trial["trial_id"], f"{trial['score']:.4f}"] for trial in result.trials]
    progress = io.StringIO()
    local_runner.run(tuned, out=progress)
    cached = {line.split()[2] for line in progress.getvalue().splitlines() if "(cached)" in line}
    assert {"Tuner", "Trainer"} <= cached


def test_the_served_models_own_metrics_are_reused_on_the_same_eval_images_and_bound_the_candidate(
        run_copy, pushed_outputs):
    """The served model was the shared run's candidate, and its metrics were pushed with it under the key of what
    they measured. A run on the same eval images with the same attacks attacks the candidate alone, evaluates it
    alone, and bounds it by those metrics: here a barely trained candidate falls below the served accuracy."""
    served = evaluation_results.metrics_by_slice(pushed_outputs["evaluation"].uri)
    local_runner.run(run_copy.with_options(learning_rate=1e-6), out=io.StringIO())
    result = summary.summarize(local_runner.metadata_path(run_copy.output_dir), run_copy.name)
    outputs = metadata.run_outputs(local_runner.metadata_path(run_copy.output_dir), run_copy.name)[1]
    copies = outputs["adversarial_examples"].custom_properties
    assert copies["baseline_reused"].int_value == 1 and copies["attacked_models"].string_value == "candidate"
    clean = served[("", evaluation_results.CLEAN)][evaluation_results.ACCURACY]
    assert result.baseline_accuracy == pytest.approx(clean, abs=1e-9)  # the served model's, as it was measured
    attacked = {(dict(slice_)["attack"], round(dict(slice_)["epsilon"], 6)): values[evaluation_results.ACCURACY]
                for (model, slice_), values in served.items()
                if model == "" and set(dict(slice_)) == {"attack", "epsilon"}}
    assert {(p.attack, p.epsilon): p.baseline for p in result.robustness} == pytest.approx(attacked, abs=1e-9)
    below = clean - result.accuracy  # --max-accuracy-drop 0, --min-accuracy 0.5 (failed too when below it)
    told = [f"sparse_categorical_accuracy on the clean images {result.accuracy:.4f} is below the lower bound 0.5000 "
            f"(by {0.5 - result.accuracy:.4f})."] if result.accuracy < 0.5 else []
    told.append(f"sparse_categorical_accuracy on the clean images is {below:.4f} below the served model's, as it was "
                f"measured when it was pushed (allowed: 0.0000; over by {below:.4f}).")
    assert result.failures == [" ".join(told)]
    gates = {gate.what: gate for gate in run_facts.gates(outputs["evaluation"].uri, metrics_by_slice(
        outputs["evaluation"].uri), {})}  # the report tells the bound as the comparison it stands for
    gate = gates["sparse_categorical_accuracy on the clean images against the served model's (as measured when pushed)"]
    assert gate.bound == pytest.approx(clean) and gate.margin == pytest.approx(-below)
    assert not result.blessed and result.pushed_to is None


def test_a_search_precision_below_its_bound_is_not_blessed_and_the_summary_says_so(run_copy):
    """Run again on the copy, the candidate is the model already served: the served model's own `search` signature
    gives the precision@10 EmbeddingIndex measured, and a lower bound above it withholds the blessing."""
    local_runner.run(run_copy.with_options(min_retrieval_precision=0.99), out=io.StringIO())
    result = summary.summarize(local_runner.metadata_path(run_copy.output_dir), run_copy.name)
    precision = result.retrieval["precision_at_10"]
    assert result.retrieval["served_precision_at_10"] == pytest.approx(precision, abs=0.005)  # ties may fall apart
    assert not result.blessed and result.pushed_to is None
    assert result.failures == [f"search precision@10 {precision:.4f} is below the lower bound 0.9900 "
                               f"(by {0.99 - precision:.4f})."]
    assert "(served model: precision@10" in result.format()


def test_a_run_with_its_own_catalog_and_an_embedding_for_retrieval_serves_search_over_it(run_copy, tmp_path):
    """--catalog: CatalogExampleGen ingests class folders of PNGs, and the pushed version's search answers with
    them; --embedding-dim: the Trainer trains a unit-length embedding with the contrastive term beside the
    classifier, and `embed` and `search` use it, averaged with the mirror image's (the run trains with flips)."""
    images, labels = fashion_mnist("t10k", TEST + 12)
    for number in range(TEST, TEST + 12):
        folder = tmp_path / "catalog" / FASHION_MNIST.class_names[labels[number]].replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"item-{number}.png").write_bytes(encode(images[number]))
    before = served_versions(run_copy)
    progress = io.StringIO()
    # Another embedding size than the served model's: blessed on the lower bounds alone.
    local_runner.run(run_copy.with_options(catalog=str(tmp_path / "catalog"), embedding_dim=16,
                                           compare_with_baseline=False), out=progress)
    assert "CatalogExampleGen" in progress.getvalue()
    result = summary.summarize(local_runner.metadata_path(run_copy.output_dir), run_copy.name)
    assert result.retrieval["catalog_items"] == 12 and result.pushed_to, result.format()
    assert served_versions(run_copy)[:-1] == before
    query = tmp_path / "catalog" / FASHION_MNIST.class_names[labels[TEST]].replace("/", "_") / f"item-{TEST}.png"
    served = tf.saved_model.load(result.pushed_to).signatures
    queries = tf.constant([query.read_bytes(), encode(images[TEST][:, ::-1])])
    found = served["search"](images=queries)
    assert [sources[0].decode() for sources in found["neighbor_sources"].numpy()] == [str(query)] * 2
    # the same look (the mirror too: `embed` averages both), and the class term: the query's unit probabilities
    probabilities = served["predict_image"](images=queries)["probabilities"].numpy()
    class_term = probabilities[:, labels[TEST]] / np.linalg.norm(probabilities, axis=1)
    np.testing.assert_allclose(found["scores"].numpy()[:, 0], 1 - CLASS_WEIGHT + CLASS_WEIGHT * class_term, atol=1e-5)
    embeddings = served["embed"](images=tf.constant([query.read_bytes()]))["embeddings"].numpy()
    assert embeddings.shape == (1, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings), 1.0, atol=1e-5)
    outputs = metadata.run_outputs(local_runner.metadata_path(run_copy.output_dir), run_copy.name)[1]
    assert "/ImageExampleGen/" in outputs["examples"].uri  # the run's examples, not the catalog's
    model_run = outputs["model_run"]
    events = tf.io.gfile.glob(os.path.join(model_run.uri, "logs", "train", "events.*"))
    assert any(b"epoch_embedding_normalized_loss" in open(path, "rb").read() for path in events)  # TensorBoard's


def test_the_search_thresholds_in_words():
    from cnnpipe.components.embedding_index import failures  # noqa: PLC0415

    figures = {"precision_at_10": 0.80, "served_precision_at_10": 0.85}
    assert failures(figures, 0.0, None) == [] and failures(figures, 0.0, 0.05) == []
    assert failures(figures, 0.9, 0.01) == [
        "search precision@10 0.8000 is below the lower bound 0.9000 (by 0.1000).",
        "search precision@10 is 0.0500 below the served model's (allowed: 0.0100; over by 0.0400)."]
    assert failures({}, 0.5, None) == [
        "search precision@10 is unknown (images without a class): drop --min-retrieval-precision."]
    assert failures({**figures, "instance_recall_at_10": 0.25}, 0.0, None, min_instance_recall=0.3) == [
        "search instance recall@10 0.2500 is below the lower bound 0.3000 (by 0.0500)."]


def test_label_outside_the_schema_stops_the_run_before_transform(run_copy, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run_copy.data, bad)
    labels_path = bad / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(labels_path.read_bytes()))
    labels[8 + 17] = 10  # record 17 of the test file gets a label outside the domain [0, 9]
    labels_path.write_bytes(gzip.compress(bytes(labels)))
    before = served_versions(run_copy)
    config = dataclasses.replace(run_copy, data=str(bad), model_name=run_copy.name)

    with pytest.raises(DataValidationError) as error:
        local_runner.run(config, out=io.StringIO())

    message = str(error.value)
    assert "t10k-images-idx3-ubyte.gz:17" in message and "'label'" in message and "schema" in message
    _, outputs = metadata.run_outputs(local_runner.metadata_path(config.output_dir), config.name)
    assert "anomalies" in outputs and "transform_graph" not in outputs and "pushed_model" not in outputs
    assert served_versions(run_copy) == before
