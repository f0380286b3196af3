"""The model registry: parameter counts checked by hand, forward passes, and real training that learns."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import fashion_mnist
from cnnpipe.models import blocks, embedding, registry, signatures, trainer, warm_start

SMALL = (28, 28, 1)


def test_lenet5_parameter_count_matches_the_hand_count():
    conv1 = 5 * 5 * 1 * 6 + 6
    conv2 = 5 * 5 * 6 * 16 + 16
    fc1 = 5 * 5 * 16 * 120 + 120  # conv1 pads by 2, so pool2 leaves 5x5x16 as in the 32x32 original
    fc2 = 120 * 84 + 84
    fc3 = 84 * 10 + 10
    model = registry.build("lenet5", SMALL, 10)
    assert model.count_params() == conv1 + conv2 + fc1 + fc2 + fc3 == 61_706
    wide = registry.build("lenet5", SMALL, 10, width=4)  # 24 and 64 filters, 480 and 336 units
    assert [wide.get_layer(name).output.shape[-1] for name in ("conv1", "conv2", "fc1", "fc2")] == [24, 64, 480, 336]


def test_the_default_lenet5_wide_has_twice_the_filters_and_units_and_batch_norm():
    conv1, conv2 = 5 * 5 * 1 * 12 + 12, 5 * 5 * 12 * 32 + 32
    batch_norm = 4 * (12 + 32)  # scale, offset, moving mean and variance per channel
    fc1, fc2, fc3 = 5 * 5 * 32 * 240 + 240, 240 * 168 + 168, 168 * 10 + 10
    model = registry.build("lenet5_wide", SMALL, 10)
    assert model.count_params() == conv1 + conv2 + batch_norm + fc1 + fc2 + fc3 == 244_538
    assert model.get_layer("conv2_relu").input is model.get_layer("conv2_bn").output


def test_alexnet_at_227_with_1000_classes_has_62_378_344_parameters():
    model = registry.build("alexnet", (227, 227, 3), 1000)
    assert model.count_params() == 62_378_344
    conv1, conv2 = model.get_layer("conv1_conv"), model.get_layer("conv2_conv")
    assert conv1.kernel.shape.num_elements() == 11 * 11 * 3 * 96 == 34_848
    assert conv1.output.shape[1:] == (55, 55, 96)
    assert conv2.kernel.shape.num_elements() == 5 * 5 * 96 * 256 == 614_400
    assert conv2.output.shape[1:] == (27, 27, 256)


@pytest.fixture(scope="module")
def resnet50() -> keras.Model:
    return registry.build("resnet50", (224, 224, 3), 1000)


def test_resnet50_matches_the_keras_applications_parameter_count(resnet50):
    assert resnet50.count_params() == keras.applications.ResNet50(weights=None).count_params() == 25_636_712


def test_resnet_bottleneck_reduces_then_expands_with_projection_where_shapes_change(resnet50):
    model = resnet50
    channels = [model.get_layer(f"conv3_block1_{i}_conv").output.shape[-1] for i in (1, 2, 3)]
    assert channels == [128, 128, 512]
    assert model.get_layer("conv3_block1_0_conv").strides == (2, 2)  # projection shortcut, halves the size
    layer_names = {layer.name for layer in model.layers}
    assert "conv3_block2_0_conv" not in layer_names  # identity shortcut inside a stage


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_model_maps_images_to_class_probabilities(name):
    shape = registry.get(name).input_shape
    model = registry.build(name, shape, 7)
    images = np.random.default_rng(0).uniform(-1, 1, (2, *shape)).astype("float32")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "alexnet_small", "resnet"])
def test_small_models_learn_from_real_fashion_mnist(name):
    images, labels = fashion_mnist("train", 512)
    images = images[..., None].astype("float32") / 127.5 - 1
    keras.utils.set_random_seed(0)
    model = registry.build(name, SMALL, 10)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    history = model.fit(images, labels, batch_size=64, epochs=3, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0]


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="lenet5"):
        registry.get("vgg")


def test_the_contrastive_term_of_hand_worked_embeddings():
    """Items 0 and 1 share a class; item 2 has no batch mate of its class. At temperature 1, item 0's mate is
    orthogonal to it and item 2 is itself: -log(e^0 / (e^0 + e^1)); item 1 sees both at cosine 0: log 2."""
    embeddings = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    per_image = embedding.SupervisedContrastiveLoss(temperature=1.0).call(tf.constant([0, 0, 1]), embeddings)
    np.testing.assert_allclose(per_image, [np.log(1 + np.e), np.log(2), 0.0], rtol=1e-6)


def test_the_instance_term_makes_each_views_twin_its_one_positive():
    """Two images, two views each, all of one class; the views of image 0 are `a`, of image 1 `b`, a ⟂ b. At
    temperature 1 each view's three mates sit at cosines 1, 0, 0: the class term is log(2 + e) - 1/3 (the mean over
    them); the instance term counts the twin alone, log(2 + e) - 1. Labels without ids have the class term only."""
    a, b = [1.0, 0.0], [0.0, 1.0]
    embeddings = tf.constant([a, b, a, b])
    loss = embedding.ContrastiveLoss(instance_weight=1.0, temperature=1.0)
    class_term = np.log(2 + np.e) - 1 / 3
    np.testing.assert_allclose(loss.call(tf.constant([[0, 0], [0, 1], [0, 0], [0, 1]]), embeddings),
                               [class_term + np.log(2 + np.e) - 1] * 4, rtol=1e-6)
    np.testing.assert_allclose(loss.call(tf.constant([0, 0, 0, 0]), embeddings), [class_term] * 4, rtol=1e-6)


def test_two_views_of_real_images_are_moved_and_lit_and_name_their_twins():
    images, labels = fashion_mnist("train", 16)
    images = images[..., None].astype("float32") / 127.5 - 1
    keras.utils.set_random_seed(0)
    views = embedding.two_views(trainer.augmentation(embedding.VIEW_SHIFT, flip=True))
    batches = tf.data.Dataset.from_tensors((images, labels)).map(views)  # as the Trainer makes them
    views, targets = next(iter(batches))
    assert views.shape == (32, 28, 28, 1)
    np.testing.assert_array_equal(targets[blocks.HEAD], np.tile(labels, 2))
    np.testing.assert_array_equal(targets[embedding.NORMALIZED],
                                  np.stack([np.tile(labels, 2), np.tile(range(16), 2)], axis=1))
    first, second = views[:16].numpy(), views[16:].numpy()
    assert np.all(np.abs(first - images).reshape(16, -1).max(axis=1) > 0.1)  # every view differs from its image
    assert np.all(np.abs(first - second).reshape(16, -1).max(axis=1) > 0.1)  # and the twins from each other
    assert first.min() >= images.min() - 1e-6 and first.max() <= images.max() + 1e-6  # lit within black and white


def test_an_embedding_head_learns_a_normalized_embedding_that_warm_starts_whole(tmp_path):
    """--embedding-dim on real Fashion-MNIST: the loss falls, the embed output has the size asked for and unit
    length, probabilities sum to 1; saved as the Trainer saves, the model warm-starts another one layer for layer."""
    images, labels = fashion_mnist("train", 512)
    images = images[..., None].astype("float32") / 127.5 - 1
    keras.utils.set_random_seed(0)
    model = embedding.with_embedding(registry.build("lenet5", SMALL, 10), 32)
    fitted = trainer.compile_model(embedding.with_contrastive_output(model), 1e-3)  # as the Trainer trains it
    history = fitted.fit(images, labels, batch_size=64, epochs=3, verbose=0).history
    for loss in ("probabilities_loss", "embedding_normalized_loss"):
        assert history[loss][-1] < 0.9 * history[loss][0], (loss, history[loss])
    embeddings = signatures.embedding_model(model).predict(images[:64], verbose=0)
    assert embeddings.shape == (64, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model.predict(images[:64], verbose=0).sum(axis=1), 1.0, rtol=1e-5)
    model.save(str(tmp_path / "1"), save_format="tf")
    fresh = embedding.with_embedding(registry.build("lenet5", SMALL, 10), 32)
    report = warm_start.initialize(fresh, str(tmp_path))
    assert "6 layers copied, 0 initialized afresh" in report  # LeNet-5 but its head, the embedding, the new head
    np.testing.assert_allclose(fresh.predict(images[:8], verbose=0), model.predict(images[:8], verbose=0), rtol=1e-5)


def test_the_mirror_averaged_embedding_is_one_unit_vector_for_an_image_and_its_mirror_image():
    images, _ = fashion_mnist("train", 64)
    images = images[..., None].astype("float32") / 127.5 - 1
    keras.utils.set_random_seed(0)
    model = embedding.with_embedding(registry.build("lenet5", SMALL, 10), 32)
    mirrored = signatures.embedding_model(model, mirrored=True)
    embeddings = mirrored.predict(images, verbose=0)
    np.testing.assert_allclose(mirrored.predict(images[:, :, ::-1], verbose=0), embeddings, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    one_view = signatures.embedding_model(model).predict(images, verbose=0)
    assert np.abs(one_view - embeddings).max() > 0.01  # the average of two views, not one of them
