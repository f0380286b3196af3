"""cnnpipe: a TFX pipeline from labelled images to a CNN served by TensorFlow Serving.

tfx 1.16 declares Python <3.11 although every library under it ships Python 3.11 wheels,
so install with `pip install --ignore-requires-python` (scripts/setup.sh does).
constraints.txt pins the whole resolved set; these are the direct dependencies.
"""

from setuptools import setup

SUBPACKAGES = ["cli", "runners", "report", "monitoring", "pipeline", "components", "components.blessing",
               "components.ingestion", "core", "models", "schemas", "serving", "robustness", "retrieval", "attacks"]

setup(
    name="cnnpipe",
    version="0.1.0",
    description="TFX pipeline: images in, a CNN served by TensorFlow Serving out",
    python_requires="==3.11.*",  # the pinned stack is verified on 3.11 only
    packages=["cnnpipe"] + [f"cnnpipe.{name}" for name in SUBPACKAGES],
    package_dir={"cnnpipe": "."},
    package_data={"cnnpipe.schemas": ["*.pbtxt"]},
    install_requires=[
        "tfx==1.16.0",
        "ml-pipelines-sdk==1.16.0",
        "ml-metadata==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tfx-bsl==1.16.1",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-transform==1.16.0",
        "tensorflow-model-analysis==0.47.1",
        "tensorflow-serving-api==2.16.1",
        "scann==1.3.2",
        "apache-beam==2.59.0",
        "pyarrow==10.0.1",
        "numpy==1.26.4",
        "protobuf==4.25.5",
        "pillow==13.0.0",
        "matplotlib==3.9.2",  # the robustness report's curve
    ],
    # kfp 2.13 is the newest kfp that installs beside TensorFlow 2.16's protobuf (< 5); cnnpipe compile/submit/schedule.
    extras_require={
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "kfp==2.13.0", "adversarial-robustness-toolbox==1.20.1",
                 "import-linter==2.16", "ruff==0.16.9", "selenium==4.51.0"],
        "kubeflow": ["kfp==2.13.0"],
    },
    entry_points={"console_scripts": ["cnnpipe=cnnpipe.cli.main:main"]},
)
