"""Names of the features each record carries from ingestion to serving."""

IMAGE = "image"  # encoded PNG or JPEG bytes
LABEL = "label"  # int64 class id
CLASS_NAME = "class_name"  # human-readable class, e.g. "Trouser"
SOURCE = "source"  # file (and index) the record came from: names it in every message
HEIGHT = "height"  # of the encoded image, in pixels
WIDTH = "width"

# Outputs of preprocessing_fn, the Trainer's inputs.
IMAGE_XF = "image_xf"  # float32 [height, width, channels], normalized
LABEL_XF = "label_xf"

# Features a client does not send (the Trainer and Evaluator read them from the examples).
NOT_SENT_BY_CLIENTS = (LABEL, CLASS_NAME, SOURCE, HEIGHT, WIDTH)
