"""A model's versions: the integer-named directories under its base path, as TF Serving reads them.

The rule lives here, below every layer that lists versions (serving, the Pusher, warm start), and
takes the names rather than the path: listing a bucket needs `tf.io.gfile`, which core does not
import. `serving/model_config.versions` lists a base path with it.
"""

from typing import Iterable


def version_names(names: Iterable[str]) -> dict[int, str]:
    """The versions among a base path's entry names, ascending, each with its directory's name: a name of digits
    is the version of its integer value, as TF Serving reads it ("00000123" is version 123; of two names for one
    version, the first in sorted order). Any other name is not a version to a server: the Pusher's hidden staging
    and deleting directories, models.config, temporary copies."""
    stripped = sorted(name.rstrip("/") for name in names)  # tf.io.gfile.listdir ends a bucket's directories with "/"
    found: dict[int, str] = {}
    for name in stripped:
        if name.isascii() and name.isdigit():
            found.setdefault(int(name), name)
    return dict(sorted(found.items()))


def integer_versions(names: Iterable[str]) -> list[int]:
    """The versions among a base path's entry names, ascending (`version_names`)."""
    return list(version_names(names))
