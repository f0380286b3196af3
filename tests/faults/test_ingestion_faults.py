"""Fault matrix, ingestion: odd but real image files (Fashion-MNIST pixels) in class folders and TFRecords.

Each is ingested as ImageExampleGen does (the Beam transform `ReadImages`), and every stored image is then
decoded as Transform decodes it (`preprocessing.decode_image`, for grey and colour models).
"""

import dataclasses
import glob
import io
import os
import struct
import zlib
from typing import Callable, Optional

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.io import WriteToTFRecord
from apache_beam.testing import test_pipeline
from google.protobuf import json_format
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from PIL import Image

from conftest import encode, fashion_mnist
from cnnpipe.core.errors import IngestionError
from cnnpipe.components.ingestion import executor
from cnnpipe.models import preprocessing
from cnnpipe.serving import client

CLASSES = ("Bag", "Sandal", "Trouser")
PLAIN_PER_CLASS = 2
ORIENTATION = 0x0112  # the EXIF tag
ROTATE_90_CLOCKWISE = 6  # its value for "turn the stored image 90° clockwise to view it"
# Adam7's seven passes: the first column and row, then the step between columns and rows
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


# --- building odd files from real pixels --------------------------------------------------------


def saved(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def ycck_jpeg(pixels: np.ndarray) -> bytes:
    """A YCCK JPEG: PIL writes CMYK only, so its Adobe marker's colour transform is set to 2 (YCCK)."""
    cmyk = encode(pixels, "CMYK", image_format="JPEG")
    transform = cmyk.index(b"Adobe") + 11  # "Adobe", version, flags0, flags1, then the transform byte
    return cmyk[:transform] + b"\x02" + cmyk[transform + 1:]


def interlaced_png(pixels: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit grey PNG (PIL cannot write one): seven passes, each row with filter 0."""
    passes = [pixels[y::dy, x::dx] for x, y, dx, dy in ADAM7]
    scanlines = b"".join(b"\0" + row.tobytes() for sub_image in passes if sub_image.size for row in sub_image)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 1)  # grey, Adam7
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines))
            + chunk(b"IEND", b""))


def palette_png_with_transparency(pixels: np.ndarray) -> bytes:
    return saved(Image.fromarray(pixels).convert("P"), "PNG", transparency=0)


def sixteen_bit_png(pixels: np.ndarray, channels: int) -> bytes:
    """The 8-bit pixels spread over 16 bits (x 257), so scaling back gives them again; clipping would not."""
    return tf.io.encode_png(np.repeat(pixels[..., None], channels, -1).astype(np.uint16) * 257).numpy()


def sixteen_bit_tiff(pixels: np.ndarray) -> bytes:
    return saved(Image.fromarray(pixels.astype(np.uint16) * 257), "TIFF")


def animated_gif(frames: np.ndarray) -> bytes:
    first, *rest = [Image.fromarray(frame) for frame in frames]
    return saved(first, "GIF", save_all=True, append_images=rest)


def rotated_jpeg(pixels: np.ndarray) -> bytes:
    """A phone's JPEG: stored 40 wide and 28 high, tagged to be viewed turned 90° clockwise."""
    exif = Image.Exif()
    exif[ORIENTATION] = ROTATE_90_CLOCKWISE
    return saved(Image.fromarray(pixels).convert("RGB").resize((40, 28)), "JPEG", exif=exif)


# --- what the stored image must show ------------------------------------------------------------


def rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[..., None], 3, -1)


def pil_rgb(data: bytes) -> np.ndarray:
    """The file's first frame as PIL converts it to RGB (CMYK by PIL's own formula)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclasses.dataclass(frozen=True)
class Odd:
    """An odd file in a class folder and what ingestion must store for it."""

    kind: str
    name: str
    make: Callable[[np.ndarray], bytes]  # from real pixels (three images; most use the first)
    converted: bool  # stored as a PNG; else its own bytes are kept
    shows: Optional[Callable[[bytes, np.ndarray], np.ndarray]]  # the RGB pixels stored, from (file, pixels)
    expected: str

    def param(self):
        return pytest.param(self, id=self.name, marks=pytest.mark.fault("ingestion", self.kind, self.expected))


ODD_FILES = [
    Odd("CMYK JPEG", "cmyk.jpg", lambda p: encode(p[0], "CMYK", image_format="JPEG"), True, lambda d, p: pil_rgb(d),
        "converted to an RGB PNG; decodes in Transform (grey and colour)"),
    Odd("YCCK JPEG", "ycck.jpg", lambda p: ycck_jpeg(p[0]), True, lambda d, p: pil_rgb(d),
        "converted to an RGB PNG; decodes in Transform"),
    Odd("progressive JPEG", "progressive.jpg", lambda p: saved(Image.fromarray(p[0]), "JPEG", progressive=True),
        False, None, "kept as it is (TensorFlow decodes it)"),
    Odd("palette PNG with transparency", "palette.png", lambda p: palette_png_with_transparency(p[0]), False,
        lambda d, p: pil_rgb(d), "kept as it is (TensorFlow decodes it)"),
    Odd("interlaced (Adam7) PNG", "interlaced.png", lambda p: interlaced_png(p[0]), False, lambda d, p: rgb(p[0]),
        "kept as it is (TensorFlow decodes it)"),
    Odd("16-bit RGB PNG", "rgb16.png", lambda p: sixteen_bit_png(p[0], 3), False, lambda d, p: rgb(p[0]),
        "kept; TensorFlow scales it to 8 bits (not clipped)"),
    Odd("16-bit grey PNG", "grey16.png", lambda p: sixteen_bit_png(p[0], 1), False, lambda d, p: rgb(p[0]),
        "kept; TensorFlow scales it to 8 bits (not clipped)"),
    Odd("16-bit grey TIFF", "grey16.tif", lambda p: sixteen_bit_tiff(p[0]), True, lambda d, p: rgb(p[0]),
        "converted to an 8-bit PNG, scaled (not clipped)"),
    Odd("BMP", "image.bmp", lambda p: encode(p[0], image_format="BMP"), True, lambda d, p: rgb(p[0]),
        "converted to PNG (TensorFlow decodes no grey BMP); same pixels"),
    Odd("WebP (lossless)", "image.webp", lambda p: saved(Image.fromarray(p[0]), "WEBP", lossless=True), True,
        lambda d, p: rgb(p[0]), "converted to PNG; same pixels"),
    Odd("animated GIF", "animated.gif", animated_gif, True, lambda d, p: rgb(p[0]),
        "its first frame converted to PNG"),
    Odd("TIFF", "image.tiff", lambda p: encode(p[0], "RGB", image_format="TIFF"), True, lambda d, p: rgb(p[0]),
        "converted to PNG; same pixels"),
    Odd("EXIF-rotated JPEG (orientation 6)", "phone.jpg", lambda p: rotated_jpeg(p[0]), True,
        lambda d, p: np.rot90(pil_rgb(d), k=-1), "stored upright as PNG, 28 wide and 40 high"),
]


# --- ingesting as ImageExampleGen does ----------------------------------------------------------


def properties(root, data_format: str) -> dict:
    """The exec_properties ImageExampleGen hands its executor."""
    return {"input_base": str(root),
            "custom_config": json_format.MessageToJson(executor.custom_config(data_format, CLASSES))}


def ingest(root, pattern: str = "*/*", data_format: str = "folder") -> dict[str, dict]:
    """ReadImages on Beam over `root`; the examples by their source (a file's path below `root`)."""
    output = os.path.join(f"{root}.examples", "examples")
    with test_pipeline.TestPipeline() as pipeline:
        _ = pipeline | executor.ReadImages(properties(root, data_format), pattern) | WriteToTFRecord(output)
    examples = {}
    for record in tf.data.TFRecordDataset(glob.glob(output + "*")).as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        example = {key: (value.int64_list.value or value.bytes_list.value or value.float_list.value)[0]
                   for key, value in feature.items()}
        examples[example["source"].decode().removeprefix(f"{root}/")] = example
    return examples


def ingestion_error(root) -> str:
    """The IngestionError that ingesting `root` stops with, without Beam's step name."""
    with pytest.raises(IngestionError) as error:
        ingest(root)
    return str(error.value).split(" [while running")[0]


def decodes_as_transform_does(example: dict) -> np.ndarray:
    """The stored image through Transform's decode for a grey and a colour model; its RGB pixels."""
    image, height, width = tf.constant(example["image"]), example["height"], example["width"]
    for channels in (1, 3):
        preprocessing.decode_image(image, height, width, channels)
    pixels = tf.io.decode_image(image, channels=3, expand_animations=False).numpy()
    assert pixels.shape[:2] == (height, width)  # the features describe the stored image
    return pixels


def write_plain_tree(root, per_class: int = PLAIN_PER_CLASS, classes=CLASSES) -> None:
    """Real grey PNGs of each class, `per_class` in each class folder."""
    images, labels = fashion_mnist("train", 300)
    for label, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for index, pixels in enumerate(images[labels == label][:per_class]):
            (root / name / f"plain-{index}.png").write_bytes(encode(pixels))


# --- odd image files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_tree(tmp_path_factory) -> tuple[dict[str, bytes], dict[str, dict], np.ndarray]:
    """Every odd file in the Bag folder beside plain PNGs, ingested once: (files, examples, pixels)."""
    root = tmp_path_factory.mktemp("odd") / "data"
    write_plain_tree(root)
    pixels = fashion_mnist("train", 3)[0]
    files = {odd.name: odd.make(pixels) for odd in ODD_FILES}
    for name, data in files.items():
        (root / "Bag" / name).write_bytes(data)
    return files, ingest(root), pixels


@pytest.mark.parametrize("odd", [odd.param() for odd in ODD_FILES])
def test_odd_image_reaches_transform_decodable(odd_tree, odd, observed):
    files, examples, pixels = odd_tree
    assert f"Bag/{odd.name}" in examples, f"Bag/{odd.name} was not ingested"
    example = examples[f"Bag/{odd.name}"]
    stored = decodes_as_transform_does(example)
    if odd.converted:
        assert example["image"].startswith(b"\x89PNG") and example["image"] != files[odd.name]
    else:
        assert example["image"] == files[odd.name]
    if odd.shows:
        np.testing.assert_array_equal(stored, odd.shows(files[odd.name], pixels))
    how = "converted to PNG" if odd.converted else "kept its bytes"
    observed(f"{how}; decoded by preprocessing.decode_image (1 and 3 channels) as "
             f"{example['height']}x{example['width']}" + ("; pixels as expected" if odd.shows else ""))


@pytest.mark.fault("ingestion", "CMYK JPEG inside a TFRecord", "converted to an RGB PNG; decodes in Transform")
def test_cmyk_jpeg_in_a_tfrecord_is_converted(tmp_path, observed):
    cmyk = encode(fashion_mnist("train", 1)[0][0], "CMYK", image_format="JPEG")
    example = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[cmyk])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))}))
    with tf.io.TFRecordWriter(str(tmp_path / "train.tfrecord")) as writer:
        writer.write(example.SerializeToString())
    (stored,) = ingest(tmp_path, "*.tfrecord", "tfrecord").values()
    pixels = decodes_as_transform_does(stored)
    assert stored["image"].startswith(b"\x89PNG")
    np.testing.assert_array_equal(pixels, pil_rgb(cmyk))
    observed(f"converted to PNG; decoded by preprocessing.decode_image as {stored['height']}x{stored['width']}")


# --- symlinks -----------------------------------------------------------------------------------


@pytest.mark.fault("ingestion", "symlinked class folder", "followed: its images are ingested")
def test_symlinked_class_folder_is_followed(tmp_path, observed):
    root = tmp_path / "data"
    write_plain_tree(root, classes=CLASSES[:2])
    write_plain_tree(tmp_path / "elsewhere", classes=CLASSES)
    os.symlink(tmp_path / "elsewhere" / "Trouser", root / "Trouser")
    trousers = [e for e in ingest(root).values() if e["class_name"] == b"Trouser"]
    assert len(trousers) == PLAIN_PER_CLASS and all(e["label"] == 2 for e in trousers)
    for example in trousers:
        decodes_as_transform_does(example)
    observed(f"Trouser -> elsewhere/Trouser: {len(trousers)} of {PLAIN_PER_CLASS} images ingested")


@pytest.mark.fault("ingestion", "symlinked image file", "followed: the image it points to is ingested")
def test_symlinked_image_file_is_followed(tmp_path, observed):
    root = tmp_path / "data"
    write_plain_tree(root)
    photo = saved(Image.fromarray(fashion_mnist("train", 1)[0][0]), "WEBP", lossless=True)
    (tmp_path / "photo.webp").write_bytes(photo)
    os.symlink(tmp_path / "photo.webp", root / "Bag" / "linked.webp")
    example = ingest(root)["Bag/linked.webp"]
    decodes_as_transform_does(example)
    assert example["class_name"] == b"Bag"
    observed("Bag/linked.webp -> photo.webp: ingested as a Bag image (converted to PNG)")


@pytest.mark.parametrize("link, target", [
    pytest.param("Bag/gone.png", "gone.png", id="image", marks=pytest.mark.fault(
        "ingestion", "broken symlink in a class folder", "IngestionError naming the link and its target")),
    pytest.param("Shirt", "Shirt", id="class folder", marks=pytest.mark.fault(
        "ingestion", "broken symlink as a class folder", "IngestionError naming the link and its target")),
])
def test_broken_symlink_is_named(tmp_path, link, target, observed):
    root = tmp_path / "data"
    write_plain_tree(root)
    os.symlink(tmp_path / target, root / link)
    message = ingestion_error(root)
    assert message.startswith(f"{root / link}: a broken symlink (to {tmp_path / target}") and "remove it" in message
    observed(message)


# --- files that are no images, and files that stay ignored --------------------------------------


@pytest.mark.parametrize("name, data", [
    pytest.param("notes.txt", b"shot on 2024-05-01\n", id="notes.txt", marks=pytest.mark.fault(
        "ingestion", "text file in a class folder", "IngestionError naming the file: remove it")),
    pytest.param("label.png", b"hello world, I am not a PNG", id="text named .png", marks=pytest.mark.fault(
        "ingestion", "text file named .png", "IngestionError in words (its first bytes), no Python object reprs")),
])
def test_a_file_that_is_no_image_stops_the_run(tmp_path, name, data, observed):
    root = tmp_path / "data"
    write_plain_tree(root)
    (root / "Sandal" / name).write_bytes(data)
    message = ingestion_error(root)
    expected = f"{root / 'Sandal' / name}: not an image PIL or TensorFlow can read (it starts with bytes "
    assert message.startswith(expected) and message.endswith("; replace it or remove it.")
    assert "object at 0x" not in message and "BytesIO" not in message
    assert f"starts with bytes {repr(data[:8])[1:]})" in message
    observed(message)


@pytest.mark.fault("ingestion", "hidden files and folders, and what operating systems leave in folders of images "
                   "(.DS_Store, ._ copies, Thumbs.db, desktop.ini, __MACOSX/, .ipynb_checkpoints)",
                   "skipped: neither images nor classes; counted and named in the summary")
def test_hidden_files_and_what_operating_systems_leave_are_skipped(tmp_path, observed):
    """A folder zipped on a Mac and opened on Windows."""
    root = tmp_path / "data"
    write_plain_tree(root)
    (root / "Bag" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "Bag" / "Thumbs.db").write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))
    (root / "Sandal" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "Sandal" / "._0.png").write_bytes(b"\0\5\x16\7 AppleDouble")
    os.makedirs(root / "__MACOSX" / "Bag")
    (root / "__MACOSX" / "Bag" / "._0.png").write_bytes(b"\0\5\x16\7 AppleDouble")
    os.makedirs(root / ".ipynb_checkpoints")
    (root / ".ipynb_checkpoints" / "notes.txt").write_text("not a class")
    examples = ingest(root)
    assert len(examples) == PLAIN_PER_CLASS * len(CLASSES)
    assert {example["class_name"] for example in examples.values()} == {name.encode() for name in CLASSES}
    artifact = standard_artifacts.Examples()  # the executor as ImageExampleGen runs it records what it skipped
    artifact.uri = str(tmp_path / "examples")
    exec_properties = {**properties(root, "folder"),
                       "input_config": json_format.MessageToJson(example_gen_pb2.Input(splits=[
                           example_gen_pb2.Input.Split(name="all", pattern="*/*")])),
                       "output_config": json_format.MessageToJson(example_gen_pb2.Output())}
    executor.Executor().Do({}, {"examples": [artifact]}, exec_properties)
    skipped = artifact.get_string_custom_property(executor.SKIPPED_FILES).split("\n")
    assert skipped == sorted(str(root / name) for name in ("Bag/.DS_Store", "Bag/Thumbs.db", "Sandal/._0.png",
                                                           "Sandal/desktop.ini", "__MACOSX", ".ipynb_checkpoints"))
    observed(f"{len(examples)} plain images ingested in {len(CLASSES)} classes; the other entries skipped and "
             f"counted in the summary ({len(skipped)} here)")


# --- serving: `cnnpipe predict` sends what ingestion stores -------------------------------------


@pytest.mark.fault("serving", "EXIF-rotated JPEG and CMYK JPEG sent by cnnpipe predict",
                   "sent upright, as PNGs a grey model decodes (as ingestion stores them); an upright PNG unchanged")
def test_predict_client_sends_upright_images(tmp_path, observed):
    pixels = fashion_mnist("train", 1)[0][0]
    (tmp_path / "phone.jpg").write_bytes(rotated_jpeg(pixels))
    (tmp_path / "cmyk.jpg").write_bytes(encode(pixels, "CMYK", image_format="JPEG"))
    (tmp_path / "plain.png").write_bytes(encode(pixels))
    rotated, cmyk, plain = client.read_images([str(tmp_path / name) for name in ("phone.jpg", "cmyk.jpg", "plain.png")])
    upright = tf.io.decode_image(rotated, channels=3).numpy()
    np.testing.assert_array_equal(upright, np.rot90(pil_rgb((tmp_path / "phone.jpg").read_bytes()), k=-1))
    np.testing.assert_array_equal(tf.io.decode_image(cmyk, channels=3).numpy(),
                                  pil_rgb((tmp_path / "cmyk.jpg").read_bytes()))
    assert tf.io.decode_image(cmyk, channels=1).shape == (28, 28, 1)  # a CMYK JPEG would fail here
    assert plain == (tmp_path / "plain.png").read_bytes()
    observed(f"phone.jpg sent as an upright PNG, {upright.shape[0]}x{upright.shape[1]}; cmyk.jpg as an RGB PNG; "
             "plain.png as it is")


# --- the pipeline's Transform over a folder of them ---------------------------------------------


@pytest.mark.fault("ingestion", "class folders mixing every odd format, through ImageExampleGen and Transform",
                   "Transform runs; every file becomes a transformed example")
def test_transform_runs_on_a_folder_of_odd_images(tmp_path, observed):
    from tfx import v1 as tfx  # noqa: PLC0415 - heavy; only this test builds a pipeline

    from cnnpipe.components.ingestion import source  # noqa: PLC0415
    from cnnpipe.components.ingestion.component import ImageExampleGen  # noqa: PLC0415
    from cnnpipe.pipeline import dag  # noqa: PLC0415
    from cnnpipe.pipeline.config import DEFAULT_BEAM_ARGS  # noqa: PLC0415
    from cnnpipe.runners.local_runner import own_temp_dir  # noqa: PLC0415

    root = tmp_path / "data"
    write_plain_tree(root, per_class=6)
    images, labels = fashion_mnist("train", 300)
    for index, odd in enumerate(ODD_FILES):  # each odd file in some class, with that class's pixels
        name = CLASSES[index % len(CLASSES)]
        (root / name / odd.name).write_bytes(odd.make(images[labels == CLASSES.index(name)][:3]))
    count = 6 * len(CLASSES) + len(ODD_FILES)
    # 30% each to eval and validation: 10% of 31 images may hash to an empty validation split
    example_gen = ImageExampleGen(source.detect(str(root)), eval_percent=30, validation_percent=30)
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn=dag.PREPROCESSING_FN, custom_config={"input_shape": [28, 28, 1], "normalization": "scale"})
    pipeline_root = tmp_path / "pipeline"
    with own_temp_dir():
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="odd_images", pipeline_root=str(pipeline_root),
            components=[example_gen, statistics, schema, transform],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(tmp_path / "metadata.sqlite")),
            beam_pipeline_args=list(DEFAULT_BEAM_ARGS)))
    transformed = glob.glob(str(pipeline_root / "Transform" / "transformed_examples" / "*" / "Split-*" / "*"))
    records = list(tf.data.TFRecordDataset(transformed, compression_type="GZIP").as_numpy_iterator())
    assert len(records) == count
    sizes = {len(tf.train.Example.FromString(r).features.feature["image_xf"].float_list.value) for r in records}
    assert sizes == {28 * 28}
    observed(f"Transform wrote {len(records)} of {count} examples (28x28x1 each)")
