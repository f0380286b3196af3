"""Data sets cnnpipe knows by name: where they are installed, their classes, their curated schema."""

import dataclasses

from cnnpipe.core.names import DEFAULT_DATASET


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    class_names: tuple[str, ...]
    schema: str  # name of the curated schema in schemas/
    install_hint: str


FASHION_MNIST = Dataset(
    name=DEFAULT_DATASET,
    path="/usr/share/datasets/fashion-mnist",
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    schema="fashion_mnist",
    install_hint="apt-get install dataset-fashion-mnist (as root, after apt-get update)",
)

DATASETS = {dataset.name: dataset for dataset in (FASHION_MNIST,)}

