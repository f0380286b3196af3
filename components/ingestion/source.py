"""Finds out what a data directory holds: its format, its splits and its class names."""

import dataclasses
import os
import re
from typing import Callable, Optional, Sequence

import tensorflow as tf

from cnnpipe.core.errors import IngestionError
from cnnpipe.components.ingestion import formats
from cnnpipe.core.names import EVAL, TRAIN, VALIDATION

FORMATS = ("idx", "folder", "images", "tfrecord")  # images: one folder of images without classes (a catalog)
# Directory or file-name prefixes that mark a data set's own eval split and its own validation split (`_own_splits`).
EVAL_PREFIXES = ("t10k", "test", "eval")
VALIDATION_PREFIXES = ("validation", "valid", "val", "dev")
CLASS_NAMES_FILE = "class_names.txt"
SPAN_DIRECTORY = "span-{SPAN}"  # TFX's span placeholder: data/span-1/, data/span-2/, ...
_SPAN_NAME = re.compile(r"span-(\d+)$")
_FILE_SUFFIXES = {"idx": "-images-idx3-ubyte*", "tfrecord": ".tfrecord*"}  # .tfrecord[s][.gz]


@dataclasses.dataclass(frozen=True)
class DataSource:
    """The images of a run: where they are, how they are stored and split, what the classes are.

    `split_patterns` maps split names to globs relative to `input_base`: `train` and `eval` (and `validation`
    when the data has its own) for data split by its names; a single pattern under the name `"all"` means the data
    has no split of its own and is hash-split.
    """

    format: str
    input_base: str
    split_patterns: dict[str, str]
    class_names: tuple[str, ...]

    @property
    def has_own_split(self) -> bool:
        """Whether the data has its own train and eval splits (its own validation split or not)."""
        return {TRAIN, EVAL} <= set(self.split_patterns)

    @property
    def has_spans(self) -> bool:
        """Whether the data arrives in spans; ExampleGen then ingests the newest one."""
        return any(SPAN_DIRECTORY in pattern for pattern in self.split_patterns.values())


def spans(path: str) -> list[int]:
    """The span numbers of `path`'s `span-N` subdirectories, ascending."""
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(path)] if tf.io.gfile.isdir(path) else []
    return sorted(int(match.group(1)) for match in map(_SPAN_NAME.match, names) if match)


def detect(path: str, data_format: Optional[str] = None, class_names: Optional[Sequence[str]] = None) -> DataSource:
    """Describes the data at `path`, detecting the format unless `data_format` is given."""
    path = path.rstrip("/")
    if not tf.io.gfile.exists(path):
        raise IngestionError(f"{path}: no such file or directory.")
    if not tf.io.gfile.isdir(path):  # a single file: its directory is the input base
        directory, name = os.path.split(path)
        data_format = _check_format(data_format or _file_format(path), path, ("idx", "tfrecord"))
        return DataSource(data_format, directory, {"all": name},
                          _class_names(directory, data_format, [name], class_names))
    span_numbers = spans(path)
    if span_numbers:  # every span is laid out like the newest one
        class_names = class_names or _names_file(path)
        newest = detect(os.path.join(path, f"span-{span_numbers[-1]}"), data_format, class_names)
        patterns = {split: f"{SPAN_DIRECTORY}/{pattern}" for split, pattern in newest.split_patterns.items()}
        return DataSource(newest.format, path, patterns, newest.class_names)
    data_format = _check_format(data_format or _detect_format(path), path, FORMATS)
    patterns = _split_patterns(path, data_format)
    return DataSource(data_format, path, patterns,
                      _class_names(path, data_format, list(patterns.values()), class_names))


def _check_format(data_format: str, path: str, choices: Sequence[str]) -> str:
    if data_format not in choices:
        raise IngestionError(f"{path}: unknown data format '{data_format}'; choose one of {', '.join(choices)}.")
    return data_format


def _file_format(path: str) -> str:
    """The format of a single data file, from its name."""
    name = os.path.basename(path)
    if "-images-idx3-ubyte" in name:
        return "idx"
    if ".tfrecord" in name:
        return "tfrecord"
    raise IngestionError(
        f"{path}: not an IDX image file (*-images-idx3-ubyte[.gz]) or a TFRecord file (*.tfrecord[.gz]). "
        "Rename it, or name the format with --format."
    )


def _detect_format(path: str) -> str:
    for data_format, suffix in _FILE_SUFFIXES.items():
        if tf.io.gfile.glob(os.path.join(path, "*" + suffix)):
            return data_format
    names = [name for name in tf.io.gfile.listdir(path) if not formats.is_ignored(name)]
    if any(tf.io.gfile.isdir(os.path.join(path, name)) for name in names):
        return "folder"
    if names:
        return "images"
    raise IngestionError(
        f"{path}: found no IDX files (*-images-idx3-ubyte[.gz]), no TFRecords (*.tfrecord[.gz]), no class folders "
        "and no images. Point --data at one of those, or name the format with --format."
    )


def _split_patterns(path: str, data_format: str) -> dict[str, str]:
    """The data's own splits when its names show them (train and eval, and validation when it has all three), else
    one pattern for all of it."""
    if data_format == "images":
        return {"all": "*"}
    if data_format == "folder":
        names = {name.rstrip("/") for name in tf.io.gfile.listdir(path)}
        split_names = _own_splits(lambda prefix: prefix in names)
        return ({split: f"{name}/*/*" for split, name in split_names.items()} if split_names else {"all": "*/*"})
    suffix = _FILE_SUFFIXES[data_format]
    names = [os.path.basename(f) for f in tf.io.gfile.glob(os.path.join(path, "*" + suffix))]
    if not names:
        raise IngestionError(f"{path}: holds no {data_format} files (*{suffix}).")
    split_names = _own_splits(lambda prefix: any(n.startswith(prefix) for n in names))
    return ({split: f"{prefix}*{suffix}" for split, prefix in split_names.items()} if split_names
            else {"all": "*" + suffix})


def _own_splits(present: Callable[[str], bool]) -> dict[str, str]:
    """The data's own split names (or file-name prefixes) for which `present` holds: train and eval, and validation
    too when a validation name and an eval name are both there (a validation name alone is the eval split); none
    without a training split and one other."""
    if not present(TRAIN):
        return {}
    evaluation = next((name for name in EVAL_PREFIXES if present(name)), None)
    validation = next((name for name in VALIDATION_PREFIXES if present(name)), None)
    if evaluation and validation:
        return {TRAIN: TRAIN, VALIDATION: validation, EVAL: evaluation}
    return {TRAIN: TRAIN, EVAL: evaluation or validation} if evaluation or validation else {}


def _class_names(
    path: str, data_format: str, patterns: list[str], given: Optional[Sequence[str]]
) -> tuple[str, ...]:
    """Class names: given, else `class_names.txt`, else folder names, else numbers from IDX labels; images without
    classes have none."""
    if data_format == "images":
        return ()
    given = given or _names_file(path)
    if given:
        return tuple(given)
    if data_format == "folder":
        names = formats.class_folders(os.path.join(path, os.path.dirname(os.path.dirname(patterns[0]))))
        for pattern in patterns[1:]:  # the other splits must not bring new classes
            extra = set(formats.class_folders(os.path.join(path, pattern.split("/")[0]))) - set(names)
            if extra:
                raise IngestionError(f"{path}/{pattern.split('/')[0]}: classes {sorted(extra)} are not in the "
                                     "training split.")
        return tuple(names)
    if data_format == "idx":
        images = tf.io.gfile.glob(os.path.join(path, patterns[0]))
        return tuple(str(i) for i in range(max(formats.idx_label_count(f) for f in images)))
    raise IngestionError(
        f"{path}: TFRecords do not name their classes. Write them one per line to "
        f"{os.path.join(path, CLASS_NAMES_FILE)} or pass --class-names."
    )


def _names_file(path: str) -> Optional[tuple[str, ...]]:
    """The class names in `path`/class_names.txt, one per line, if the file is there."""
    names_file = os.path.join(path, CLASS_NAMES_FILE)
    if not tf.io.gfile.exists(names_file):
        return None
    with tf.io.gfile.GFile(names_file) as f:
        return tuple(line.strip() for line in f if line.strip())
