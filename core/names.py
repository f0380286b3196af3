"""Names more than one layer shares, as plain strings (no TensorFlow): the served model's signatures and outputs,
the attacks, and where a run writes by default. The feature keys are `core/features.py`'s."""

import os
from typing import Optional

# For evaluation (attacks/eight_bit.py) and adversarial training (models/adversarial_training.py, whose methods
# models/training_config.py lists): both PGDs take the same steps (attacks/linf_ball.py).
FGSM = "fgsm"
FGSM_RS = "fgsm-rs"  # FGSM from a random start: training only
PGD = "pgd"
APGD_CE, APGD_DLR = "apgd-ce", "apgd-dlr"  # Auto-PGD with cross-entropy, with the difference of logits ratio
ATTACKS = (FGSM, PGD, APGD_CE, APGD_DLR)  # evaluated
DEFAULT_ATTACKS = (FGSM, PGD)
WORST_CASE = "worst-case"  # the slice of images that every attack was tried on, broken if any broke them
NO_ATTACK = "none"  # the clean copies' attack tag
CANDIDATE = "candidate"  # the model names TFMA and TFX's Evaluator give the two models
BASELINE = "baseline"

# The signatures every pushed model has (models/signatures.py), with the input a client sends to each.
SERVING_DEFAULT = "serving_default"
PREDICT_IMAGE = "predict_image"
PREDICT_PIXELS = "predict_pixels"
EMBED = "embed"
SEARCH = "search"  # only in a model with a catalog (components/embedding_index.py)
SEARCH_VECTOR = "search_vector"  # as search: what a nearest-neighbour index over the catalog is queried with
CLASSIFY = "classify"  # for TF Serving's Classify API: its input and outputs have the names TF Serving reads
INPUTS = {SERVING_DEFAULT: "examples", PREDICT_IMAGE: "images", PREDICT_PIXELS: "pixels", EMBED: "images",
          SEARCH: "images", SEARCH_VECTOR: "images", CLASSIFY: "inputs"}
# The predict signatures' outputs, and embed's.
PROBABILITIES = "probabilities"  # [N, classes]
CLASS_IDS = "class_ids"  # [N], the most probable class
CLASS_NAMES = "class_names"  # [N], its name
ALL_CLASS_NAMES = "all_class_names"  # [N, classes]: each column's name
EMBEDDINGS = "embeddings"
# classify's outputs, [N, classes] each: serving_default's all_class_names and probabilities.
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
# search's outputs, [N, k] each: the k catalog items most similar to each image, best first.
NEIGHBOR_IDS = "neighbor_ids"  # the items' row numbers in the catalog's item table
SCORES = "scores"  # the search score (models/catalog.py): mostly the cosine of the two embeddings
NEIGHBOR_CLASS_NAMES = "neighbor_class_names"
NEIGHBOR_SOURCES = "neighbor_sources"  # the file (and index) each item was read from
SEARCH_VECTORS = "search_vectors"  # search_vector's output [N, D]: search's scores are their dot products with items'
SEARCH_ASSETS = "assets.extra/search"  # in a model with a catalog: its item table and its ScaNN index
TRANSFORM_ASSETS = "assets.extra/transform_graph"  # in a model with a catalog: its Transform's output, to index anew
CLASS_NAMES_ASSET = "class_names.txt"  # in the SavedModel's assets/
# What the Pusher adds to each version it pushes, under assets.extra/ (servers ignore it): where the model came from,
# the statistics of its training data (the next run's drift and skew reference), and its metrics with their
# evaluation key (components/blessing/evaluation_key.py: the next run may reuse them).
PUSH_RECORD = "assets.extra/cnnpipe_push.json"
TRAINING_STATISTICS = "assets.extra/training_statistics.pb"  # a DatasetFeatureStatisticsList
PUSHED_EVALUATION = "assets.extra/evaluation"

# The splits ingestion writes (ExampleGen's output has their files under Split-<name>/): the Trainer trains on TRAIN;
# what chooses (the best epoch, early stopping, the collapse check) uses VALIDATION; the Evaluator, the blessing, the
# attacks, visual search's queries and the push check use EVAL alone. TRAIN is the drift reference and, with
# VALIDATION, the catalog.
TRAIN, VALIDATION, EVAL = "train", "validation", "eval"

# Where a run writes, and what it serves, unless told otherwise (pipeline/config.py; `cnnpipe serve` and
# `cnnpipe predict` look there too).
DEFAULT_OUTPUT_DIR = "cnnpipe-output"
SERVING_SUBDIR = "serving"
DEFAULT_DATASET = "fashion_mnist"  # its name is the served model's name
DEFAULT_SERVING_DIR = os.path.join(DEFAULT_OUTPUT_DIR, SERVING_SUBDIR)  # where `cnnpipe serve` and `predict` look


def resolve_serving_dir(output_dir: str = DEFAULT_OUTPUT_DIR, serving_dir: Optional[str] = None) -> str:
    """Where a run pushes its models: `serving_dir` when given, else `output_dir`/serving."""
    return serving_dir or os.path.join(output_dir, SERVING_SUBDIR)
