"""The same image twice in a run's data: in two splits (the model would be measured on images it trained on, or
choose its epoch by them) or under two classes (it would be taught both). Found by a hash of each example's image
bytes in ExampleGen's output; ValidationGate stops the run on them unless told to go on.
"""

import dataclasses
import hashlib
import os
from collections import defaultdict

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from cnnpipe.core import features

SHOWN = 3  # groups named in a message


@dataclasses.dataclass(frozen=True)
class Copy:
    """One of the examples that hold the same image."""

    split: str
    class_name: str
    source: str

    def __str__(self) -> str:
        return f"{self.source} ({self.split}, {self.class_name or 'no class'})"


def _images(files: list[str]) -> tf.data.Dataset:
    spec = {name: tf.io.FixedLenFeature([], tf.string, default_value="")
            for name in (features.IMAGE, features.CLASS_NAME, features.SOURCE)}
    return tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024).map(
        lambda records: tf.io.parse_example(records, spec))


def duplicates(examples: standard_artifacts.Examples) -> list[list[Copy]]:
    """The groups of examples whose image bytes are identical and that span two splits or two classes, in the order
    the splits list them."""
    by_image: dict[bytes, list[Copy]] = defaultdict(list)
    for split in artifact_utils.decode_split_names(examples.split_names):
        files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
        for batch in _images(files).as_numpy_iterator() if files else ():
            for image, class_name, source in zip(batch[features.IMAGE], batch[features.CLASS_NAME],
                                                 batch[features.SOURCE]):
                by_image[hashlib.sha256(image).digest()].append(Copy(split, class_name.decode(), source.decode()))
    return [group for group in by_image.values()
            if len({copy.split for copy in group}) > 1 or len({copy.class_name for copy in group}) > 1]


def describe(groups: list[list[Copy]]) -> str:
    """The groups in a sentence: how many span splits, how many classes, and the first SHOWN of them."""
    across_splits = sum(len({copy.split for copy in group}) > 1 for group in groups)
    across_classes = sum(len({copy.class_name for copy in group}) > 1 for group in groups)
    shown = "; ".join(" = ".join(map(str, group)) for group in groups[:SHOWN])
    more = f"; and {len(groups) - SHOWN} more" if len(groups) > SHOWN else ""
    return (f"{len(groups)} image(s) appear more than once: {across_splits} in two splits, {across_classes} under "
            f"two classes: {shown}{more}")
