"""What PushCheck runs in a process of its own:
`python -m cnnpipe.components.signature_check MODEL_DIR EVAL_FILES [WARMUP_DIR]` loads the SavedModel afresh, as a
server would, runs `serving_default` over every eval example (EVAL_FILES, a glob of GZIP TFRecords of tf.Examples),
sends a sample through `predict_image`, `predict_pixels`, `classify`, `embed` and (when the model has a catalog)
`search`, compares them with `serving_default`, and prints what it found as one line
of JSON. With WARMUP_DIR, a model without problems gets its warmup requests written there
(WARMUP_DIR/assets.extra/tf_serving_warmup_requests: components/warmup_requests.py), for the Pusher to push.
It imports TensorFlow and nothing of TFX, Transform or Keras: on the test suite's pushed model the check took 4.9 s,
against 7.4 s from the component's module.
"""

import json
import sys
from typing import Optional

import numpy as np
import tensorflow as tf

from cnnpipe.components.warmup_requests import warmup_logs
from cnnpipe.core import features, names
from cnnpipe.models.class_names import read_class_names
from cnnpipe.serving import warmup

SAMPLE = 32  # eval examples sent through every signature
BATCH = 256
PROBABILITY_TOLERANCE = 1e-5


def _compare(name: str, outputs: dict, expected: dict, class_names: list[str]) -> list[str]:
    """What differs between a signature's predictions and serving_default's on the same images."""
    problems = []
    if not np.allclose(outputs[names.PROBABILITIES], expected[names.PROBABILITIES], atol=PROBABILITY_TOLERANCE):
        worst = np.abs(outputs[names.PROBABILITIES] - expected[names.PROBABILITIES]).max()
        problems.append(f"{name}'s probabilities differ from serving_default's by up to {worst:.2g}")
    if [n.decode() for n in outputs[names.CLASS_NAMES]] != [class_names[i] for i in expected[names.CLASS_IDS]]:
        problems.append(f"{name}'s class names differ from serving_default's")
    return problems


def _classify_problems(outputs: dict, expected: dict) -> list[str]:
    """What differs between classify's scores and classes and serving_default's probabilities and all_class_names on
    the same examples."""
    problems = []
    scores, probabilities = outputs[names.CLASSIFY_SCORES].numpy(), expected[names.PROBABILITIES]
    if scores.shape != probabilities.shape:
        problems.append(f"classify returned {scores.shape} scores, not serving_default's {probabilities.shape}")
    elif not np.allclose(scores, probabilities, atol=PROBABILITY_TOLERANCE):
        worst = np.abs(scores - probabilities).max()
        problems.append(f"classify's scores differ from serving_default's probabilities by up to {worst:.2g}")
    if not np.array_equal(outputs[names.CLASSIFY_CLASSES].numpy(), expected[names.ALL_CLASS_NAMES]):
        problems.append("classify's classes differ from serving_default's all_class_names")
    return problems


def _search_problems(found: dict, vectors: np.ndarray, queries: int) -> list[str]:
    """What is wrong with `search`'s answer for `queries` images (each row's neighbours, best first) and with
    `search_vector`'s (`vectors`: one unit vector per image)."""
    scores, ids = found[names.SCORES].numpy(), found[names.NEIGHBOR_IDS].numpy()
    if scores.ndim != 2 or len(scores) != queries or ids.shape != scores.shape:
        return [f"search returned {scores.shape} scores and {ids.shape} ids, not k per image"]
    if not (np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 1e-6).all() and (scores <= 1 + 1e-5).all()):
        return ["search's scores are not scores of at most 1 in descending order"]
    if vectors.ndim != 2 or len(vectors) != queries or not np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4):
        return [f"search_vector returned {vectors.shape} vectors, not one unit vector per image"]
    return []


def run_checks(model_dir: str, eval_files: str, warmup_dir: Optional[str] = None) -> dict:
    """Loads the model and queries every signature: the problems found, the eval examples counted, the accuracy
    of `serving_default` on them and the signatures' names; writes the warmup requests to `warmup_dir`, if given,
    when there are no problems."""
    served = tf.saved_model.load(model_dir).signatures
    missing = sorted(set(names.INPUTS) - {names.SEARCH, names.SEARCH_VECTOR} - set(served))
    if missing:
        return {"problems": [f"signatures {', '.join(missing)} are missing"], "count": 0, "accuracy": 0.0,
                "signatures": sorted(served)}
    class_names = read_class_names(model_dir)
    spec = {features.IMAGE: tf.io.FixedLenFeature([], tf.string), features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(eval_files), compression_type="GZIP").batch(BATCH)
    correct = count = 0
    sample = None
    for batch in records:
        outputs = {k: v.numpy() for k, v in served[names.SERVING_DEFAULT](examples=batch).items()}
        labels = tf.io.parse_example(batch, spec)[features.LABEL].numpy()
        correct += int(np.sum(outputs[names.CLASS_IDS] == labels))
        count += len(labels)
        if sample is None:
            sample = batch[:SAMPLE], {k: v[:SAMPLE] for k, v in outputs.items()}
    if sample is None:
        return {"problems": [f"no eval examples in {eval_files}"], "count": 0, "accuracy": 0.0, "signatures": []}
    records, expected = sample
    images = tf.io.parse_example(records, spec)[features.IMAGE]
    by_image = {k: v.numpy() for k, v in served[names.PREDICT_IMAGE](images=images).items()}
    by_pixels = [served[names.PREDICT_PIXELS](pixels=tf.cast(tf.io.decode_image(image)[tf.newaxis], tf.float32))
                 for image in images]
    by_pixels = {key: np.concatenate([p[key].numpy() for p in by_pixels])
                 for key in (names.PROBABILITIES, names.CLASS_NAMES)}
    problems = _compare(names.PREDICT_IMAGE, by_image, expected, class_names)
    problems += _compare(names.PREDICT_PIXELS, by_pixels, expected, class_names)
    problems += _classify_problems(served[names.CLASSIFY](inputs=records), expected)
    embeddings = served[names.EMBED](images=images)[names.EMBEDDINGS].numpy()
    if embeddings.ndim != 2 or len(embeddings) != len(images) or not np.isfinite(embeddings).all():
        problems.append(f"embed returned {embeddings.shape} features, not one finite vector per image")
    if names.SEARCH in served:
        vectors = served[names.SEARCH_VECTOR](images=images)[names.SEARCH_VECTORS].numpy()
        problems += _search_problems(served[names.SEARCH](images=images), vectors, len(images))
    if warmup_dir and not problems:
        pixels = tf.cast(tf.io.decode_image(images[0])[tf.newaxis], tf.float32)
        warmup.write(warmup_dir, warmup_logs(sorted(served), records, images, pixels))
    return {"problems": problems, "count": count, "accuracy": correct / count, "signatures": sorted(served)}


if __name__ == "__main__":
    print(json.dumps(run_checks(*sys.argv[1:4])))
