"""A model's versions: the integer-named directories under its base path, as TF Serving reads them.

The rule lives here, below every layer that lists versions (serving, the Pusher, warm start), and
takes the names rather than the path: listing a bucket needs `tf.io.gfile`, which core does not
import. `serving/model_config.versions` lists a base path with it.
"""

from typing import Iterable


def integer_versions(names: Iterable[str]) -> list[int]:
    """The versions among a base path's entry names, ascending. Any other name is not a version to a server:
    the Pusher's hidden staging and deleting directories, models.config, temporary copies."""
    stripped = (name.rstrip("/") for name in names)  # tf.io.gfile.listdir ends a bucket's directories with "/"
    return sorted(int(name) for name in stripped if name.isascii() and name.isdigit())
