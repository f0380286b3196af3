"""Readers for the three input formats; each yields serialized tf.Examples, one per image.

Images from folders and TFRecords are stored as they are when TensorFlow decodes them upright,
else converted to PNG (`ingest_image`); IDX images are PNGs this module writes.

Every error names the file (and record index) at fault and how to fix it.
"""

import gzip
import io
import os
import struct
from typing import BinaryIO, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from cnnpipe.core.errors import IngestionError
from cnnpipe.core import images
from cnnpipe.core import features

_IDX_UNSIGNED_BYTE = 0x08
NO_LABEL = -1  # the label of an image without a class


def make_example(image: bytes, label: int, class_name: str, source: str, height: int, width: int,
                 brightness: Optional[float] = None) -> bytes:
    """The serialized tf.Example every later stage relies on; ingestion adds the image's `brightness` (its mean
    gray level, 0-255), whose distribution the validation compares between the data and the served model's."""

    def ints(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def strings(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE: strings(image),
                features.LABEL: ints(label),
                features.CLASS_NAME: strings(class_name.encode()),
                features.SOURCE: strings(source.encode()),
                features.HEIGHT: ints(height),
                features.WIDTH: ints(width),
            }
        )
    )
    if brightness is not None:
        example.features.feature[features.BRIGHTNESS].float_list.value.append(brightness)
    return example.SerializeToString(deterministic=True)


def decoded_summary(data: bytes) -> Optional[tuple[int, int, float]]:
    """(height, width, brightness) of `data` as Transform's decoder reads it; None if it cannot.

    It decodes to one channel, the strictest for PNG and JPEG: CMYK and YCCK JPEGs fail only there,
    and three channels decode whatever one does. DecodeImage is the op `tf.io.decode_image`
    (preprocessing.decode_image) runs, without that wrapper's eager overhead.
    """
    try:
        gray = tf.raw_ops.DecodeImage(contents=data, channels=1, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        return None
    return gray.shape[0], gray.shape[1], float(np.mean(gray.numpy()))


def ingest_image(data: bytes, source: str) -> tuple[bytes, int, int, float]:
    """The bytes to store for an encoded image, and their (height, width, brightness).

    TensorFlow decides what is readable: an upright PNG or JPEG that it decodes keeps its bytes;
    anything else PIL reads (CMYK JPEG, WebP, TIFF, BMP, GIF, EXIF-rotated, ...) is stored as an
    upright lossless PNG (core/images.py), which TensorFlow must then decode.
    """
    try:
        image = images.open_image(data)
        summary = None if images.needs_png(image) else decoded_summary(data)
        stored = data if summary else images.upright_png(image)
    except images.ImageReadError as error:
        raise IngestionError(f"{source}: {error}; replace it or remove it.") from None
    summary = summary or decoded_summary(stored)
    if summary is None:
        raise IngestionError(
            f"{source}: a {image.format} {image.mode} image that TensorFlow cannot decode, even converted to PNG. "
            "Convert it to an 8-bit RGB PNG yourself, or remove it."
        )
    return stored, *summary


def class_name_of(label: int, class_names: Sequence[str]) -> str:
    """The name of a class id; an id outside the classes keeps its number (validation flags it)."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


# --- MNIST-style IDX files -------------------------------------------------------------------


def idx_labels_path(images_path: str) -> str:
    """`X-labels-idx1-ubyte[.gz]` beside `X-images-idx3-ubyte[.gz]`."""
    directory, name = os.path.split(images_path)
    if "-images-idx3-ubyte" not in name:
        raise IngestionError(
            f"{images_path}: IDX image files must be named '<split>-images-idx3-ubyte[.gz]' "
            "with '<split>-labels-idx1-ubyte[.gz]' beside them."
        )
    return os.path.join(directory, name.replace("-images-idx3-ubyte", "-labels-idx1-ubyte"))


def _open_idx(path: str) -> BinaryIO:
    if not tf.io.gfile.exists(path):
        raise IngestionError(f"{path}: file not found; IDX images need their labels file beside them.")
    raw = tf.io.gfile.GFile(path, "rb")
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw


def _read(stream: BinaryIO, path: str, size: int = -1) -> bytes:
    """Up to `size` bytes (all with -1); a damaged or cut gzip stream is an error naming `path`."""
    try:
        return stream.read(size)
    except (OSError, EOFError) as error:
        raise IngestionError(
            f"{path}: cannot be read ({error}): it is damaged, cut short, or named .gz without being "
            "gzipped. Copy it again, or fix its name."
        ) from None


def _read_idx_header(stream: BinaryIO, path: str, dimensions: int) -> tuple[int, ...]:
    """Checks the magic number (unsigned bytes, `dimensions` dims) and returns the sizes."""
    magic = _read(stream, path, 4)
    expected = bytes([0, 0, _IDX_UNSIGNED_BYTE, dimensions])
    if magic != expected:
        raise IngestionError(
            f"{path}: wrong IDX magic number {magic.hex() or '(empty file)'}; expected {expected.hex()} "
            f"(unsigned bytes, {dimensions} dimension{'s' if dimensions > 1 else ''}). "
            "Is this the right file, and is it gzipped only when named .gz?"
        )
    sizes = _read(stream, path, 4 * dimensions)
    if len(sizes) != 4 * dimensions:
        raise IngestionError(f"{path}: the IDX header is cut short.")
    return struct.unpack(f">{dimensions}I", sizes)


def _encode_png(pixels: bytes, rows: int, columns: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("L", (columns, rows), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def read_idx(images_path: str, class_names: Sequence[str]) -> Iterator[bytes]:
    """Streams an IDX image file and its labels file as examples with lossless PNG images."""
    labels_path = idx_labels_path(images_path)
    with _open_idx(images_path) as images, _open_idx(labels_path) as labels:
        count, rows, columns = _read_idx_header(images, images_path, 3)
        (label_count,) = _read_idx_header(labels, labels_path, 1)
        if count != label_count:
            raise IngestionError(
                f"{images_path} holds {count} images but {labels_path} holds {label_count} labels; "
                "they must come in pairs."
            )
        all_labels = _read(labels, labels_path, count)
        if len(all_labels) != count:
            raise IngestionError(f"{labels_path}: truncated, {len(all_labels)} of {count} labels.")
        name = os.path.basename(images_path)
        size = rows * columns
        for index, label in enumerate(all_labels):
            pixels = _read(images, images_path, size)
            if len(pixels) != size:
                raise IngestionError(f"{images_path}: truncated at image {index} of {count}.")
            png = _encode_png(pixels, rows, columns)
            yield make_example(png, label, class_name_of(label, class_names), f"{name}:{index}", rows, columns,
                               float(np.frombuffer(pixels, np.uint8).mean()))


def read_idx_array(path: str, dimensions: int) -> np.ndarray:
    """A whole IDX file of unsigned bytes as an array of the shape its (checked) header gives."""
    with _open_idx(path) as stream:
        shape = _read_idx_header(stream, path, dimensions)
        data = _read(stream, path)
    if len(data) != np.prod(shape):
        raise IngestionError(f"{path}: holds {len(data)} bytes of data where its header promises {np.prod(shape)}.")
    return np.frombuffer(data, np.uint8).reshape(shape)


def write_idx(prefix: str, images: np.ndarray, labels: np.ndarray) -> str:
    """Writes `images` (N x rows x columns, 8-bit) and their `labels` as the gzipped IDX pair
    `<prefix>-images-idx3-ubyte.gz` / `<prefix>-labels-idx1-ubyte.gz`; returns the images file's path."""
    images_path = f"{prefix}-images-idx3-ubyte.gz"
    with gzip.open(images_path, "wb") as file:
        file.write(struct.pack(">4B3I", 0, 0, 8, 3, *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(idx_labels_path(images_path), "wb") as file:
        file.write(struct.pack(">4BI", 0, 0, 8, 1, len(labels)) + np.asarray(labels, np.uint8).tobytes())
    return images_path


def idx_label_count(images_path: str) -> int:
    """1 + the largest label in the labels file beside `images_path` (for unnamed classes)."""
    labels_path = idx_labels_path(images_path)
    with _open_idx(labels_path) as labels:
        (count,) = _read_idx_header(labels, labels_path, 1)
        return max(_read(labels, labels_path, count), default=0) + 1


# --- class-per-folder trees of images --------------------------------------------------------


OS_METADATA = ("Thumbs.db", "desktop.ini", "__MACOSX")  # what file managers and archivers leave beside images


def is_ignored(path: str) -> bool:
    """A hidden file or folder (.DS_Store, macOS's ._ copies, .ipynb_checkpoints) or what an operating system leaves
    in folders of images (OS_METADATA): ingestion skips it."""
    name = os.path.basename(path.rstrip("/"))
    return name.startswith(".") or name in OS_METADATA


def _visible_entries(directory: str) -> list[str]:
    """The names in `directory` that ingestion does not skip; an error names a broken symlink among them."""
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(directory) if not is_ignored(name)]
    for name in names:
        path = os.path.join(directory, name)
        if os.path.islink(path) and not os.path.exists(path):
            raise IngestionError(
                f"{path}: a broken symlink (to {os.readlink(path)}, which does not exist). Fix the link or remove it."
            )
    return names


def class_folders(root: str) -> list[str]:
    """Sorted class folder names under `root`, symlinked folders included; errors name an empty folder."""
    if not tf.io.gfile.isdir(root):
        raise IngestionError(f"{root}: not a directory of class folders.")
    names = sorted(name for name in _visible_entries(root) if tf.io.gfile.isdir(os.path.join(root, name)))
    if not names:
        raise IngestionError(f"{root}: has no class folders; put each class's images in a folder named after it.")
    for name in names:
        folder = os.path.join(root, name)
        if not _visible_entries(folder):
            raise IngestionError(f"{folder}: class folder holds no images. Add images or remove the folder.")
    return names


def skipped_files(folders: Sequence[str]) -> list[str]:
    """The entries of `folders` that ingestion skips (is_ignored), by path."""
    return sorted(os.path.join(folder, name.rstrip("/")) for folder in folders
                  for name in tf.io.gfile.listdir(folder) if is_ignored(name))


def read_image_file(path: str, data: bytes, class_names: Sequence[str]) -> bytes:
    """One image of a class-per-folder tree as an example; its class is its folder's name. Without class names (a
    folder of images without classes: a catalog's new items) it has no class."""
    class_name = os.path.basename(os.path.dirname(path)) if class_names else ""
    if class_names and class_name not in class_names:
        raise IngestionError(
            f"{path}: its folder '{class_name}' is not one of the classes {list(class_names)}; "
            "every split must have the same class folders."
        )
    image, height, width, brightness = ingest_image(data, path)
    label = class_names.index(class_name) if class_names else NO_LABEL
    return make_example(image, label, class_name, path, height, width, brightness)


# --- TFRecords of tf.Example -----------------------------------------------------------------


def read_tfrecord(path: str, class_names: Sequence[str]) -> Iterator[bytes]:
    """Examples of a TFRecord file, checked and completed with class_name, source and size.

    Errors name the record as `file:index`; a record's own `source` feature is kept in the example.
    """
    compression = "GZIP" if path.endswith(".gz") else ""
    name = os.path.basename(path)
    records = tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()
    index = 0
    while True:
        record_id = f"{name}:{index}"
        try:
            record = next(records)
        except StopIteration:
            return
        except tf.errors.DataLossError:
            raise IngestionError(
                f"{path}: damaged or cut short at record {index} (is it gzipped only when named .gz?). "
                "Write the file again."
            ) from None
        try:
            feature = tf.train.Example.FromString(record).features.feature
        except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError type
            raise IngestionError(f"{record_id}: not a serialized tf.Example.") from None
        image = feature[features.IMAGE].bytes_list.value if features.IMAGE in feature else []
        label = feature[features.LABEL].int64_list.value if features.LABEL in feature else []
        if len(image) != 1 or len(label) != 1:
            raise IngestionError(
                f"{record_id}: needs one '{features.IMAGE}' bytes value (an encoded image) and one "
                f"'{features.LABEL}' int64 value."
            )
        own_source = feature[features.SOURCE].bytes_list.value if features.SOURCE in feature else []
        source = own_source[0].decode() if own_source else record_id
        stored, height, width, brightness = ingest_image(image[0], record_id)
        yield make_example(stored, label[0], class_name_of(label[0], class_names), source, height, width, brightness)
        index += 1
