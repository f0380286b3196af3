"""Where the pipeline runs: locally (LocalDagRunner, with progress from ML Metadata), as scheduled retraining on the
newest span, and compiled for Kubeflow Pipelines."""
