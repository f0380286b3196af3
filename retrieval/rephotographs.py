"""Second photos of catalog items: what a shopper's photo of an item the catalog holds looks like, to ask search for
that item (instance recall). Each is the item's image moved by one pixel (its edge repeated) and made 10% brighter
or darker: the pipeline's measure. Harder ones (`harder_photos`, for the bench) are also 5% larger or smaller and
have 10% more or less contrast."""

import numpy as np
import tensorflow as tf

SHIFT = 1  # pixels
BRIGHTNESS = 0.1  # the share brighter or darker
PROTOCOL = f"a {SHIFT}-pixel shift and ±{BRIGHTNESS:.0%} brightness"  # in words, for the figures
SCALE, CONTRAST = 0.05, 0.1  # harder photos: the share larger or smaller, the share more or less contrast


def rephotographed(image: tf.Tensor, shift: tuple[int, int], brightness: float) -> tf.Tensor:
    """The encoded `image` moved by `shift` (rows, columns; each -1, 0 or 1) with its edge repeated, its pixels times
    1 + `brightness`, as a PNG."""
    pixels = tf.io.decode_image(image, expand_animations=False)
    height, width = tf.shape(pixels)[0], tf.shape(pixels)[1]
    padded = tf.pad(pixels, [[SHIFT, SHIFT], [SHIFT, SHIFT], [0, 0]], mode="SYMMETRIC")
    moved = padded[SHIFT - shift[0]:SHIFT - shift[0] + height, SHIFT - shift[1]:SHIFT - shift[1] + width]
    lit = tf.clip_by_value(tf.round(tf.cast(moved, tf.float32) * (1 + brightness)), 0, 255)
    return tf.io.encode_png(tf.cast(lit, tf.uint8))


def second_photos(images: list[bytes], seed: int = 0) -> list[bytes]:
    """Each image re-photographed: a shift to one of its 8 neighbouring positions and ±BRIGHTNESS, drawn from
    `seed`."""
    rng = np.random.default_rng(seed)
    neighbours = [(rows, columns) for rows in (-SHIFT, 0, SHIFT) for columns in (-SHIFT, 0, SHIFT) if rows or columns]
    return [rephotographed(tf.constant(image), neighbours[rng.integers(len(neighbours))],
                           float(rng.choice((-BRIGHTNESS, BRIGHTNESS)))).numpy() for image in images]


def restyled(image: tf.Tensor, scale: float, contrast: float) -> tf.Tensor:
    """The encoded `image` 1 + `scale` times as large (resized, then cropped or padded with black to its size, about its
    centre), its pixels' distance from their mean times 1 + `contrast`, as a PNG."""
    pixels = tf.cast(tf.io.decode_image(image, expand_animations=False), tf.float32)
    size = tf.shape(pixels)[:2]
    resized = tf.image.resize(pixels, tf.cast(tf.round(tf.cast(size, tf.float32) * (1 + scale)), tf.int32))
    framed = tf.image.resize_with_crop_or_pad(resized, size[0], size[1])
    mean = tf.reduce_mean(framed)
    return tf.io.encode_png(tf.cast(tf.clip_by_value(tf.round(mean + (framed - mean) * (1 + contrast)), 0, 255),
                                    tf.uint8))


def harder_photos(images: list[bytes], seed: int = 0) -> list[bytes]:
    """`second_photos` of each image first made ±SCALE larger and given ±CONTRAST contrast, drawn from `seed`."""
    rng = np.random.default_rng(seed + 1)
    return second_photos([restyled(tf.constant(image), float(rng.choice((-SCALE, SCALE))),
                                   float(rng.choice((-CONTRAST, CONTRAST)))).numpy() for image in images], seed)
