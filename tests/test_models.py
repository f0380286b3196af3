"""The model registry and LeNet-5."""

import numpy as np
import pytest

from cnnpipe.models import registry


def test_lenet5_parameter_count_matches_the_hand_count():
    conv1 = 5 * 5 * 1 * 6 + 6
    conv2 = 5 * 5 * 6 * 16 + 16
    fc1 = 5 * 5 * 16 * 120 + 120  # conv1 pads by 2, so pool2 leaves 5x5x16 as in the 32x32 original
    fc2 = 120 * 84 + 84
    fc3 = 84 * 10 + 10
    model = registry.build("lenet5", (28, 28, 1), 10)
    assert model.count_params() == conv1 + conv2 + fc1 + fc2 + fc3 == 61_706


def test_lenet5_outputs_class_probabilities():
    model = registry.build("lenet5", (28, 28, 1), 7)
    probabilities = model.predict(np.random.default_rng(0).uniform(-1, 1, (3, 28, 28, 1)), verbose=0)
    assert probabilities.shape == (3, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="lenet5"):
        registry.get("vgg")
