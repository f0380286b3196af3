"""Names of the features each record carries from ingestion to serving."""

IMAGE = "image"  # encoded PNG or JPEG bytes
LABEL = "label"  # int64 class id
CLASS_NAME = "class_name"  # human-readable class, e.g. "Trouser"
SOURCE = "source"  # file (and index) the record came from: names it in every message
HEIGHT = "height"  # of the encoded image, in pixels
WIDTH = "width"
BRIGHTNESS = "brightness"  # the image's mean gray level, 0-255: drift in lighting shows in its distribution

# Outputs of preprocessing_fn, the Trainer's inputs.
IMAGE_XF = "image_xf"  # float32 [height, width, channels], normalized
LABEL_XF = "label_xf"

# Added to the adversarial copies of the eval examples (robustness/adversarial_examples.py).
ATTACK = "attack"  # "none" (the clean copy), "fgsm" or "pgd"
EPSILON = "epsilon"  # float, the L-inf bound on the [0, 1] pixel scale; 0 for the clean copy
ATTACKED_MODEL = "attacked_model"  # "none" (clean), "candidate" or "baseline": whose gradients made the copy
# Example weights: each model counts the clean copies and its own adversarial copies only (TFMA
# ModelSpec.example_weight_key), so both are evaluated white box in one Evaluator.
WEIGHT_CANDIDATE = "weight_candidate"
WEIGHT_BASELINE = "weight_baseline"
