"""Shared pieces that import no TensorFlow: reading image files with PIL (ingestion and `cnnpipe predict`)."""
