"""A run told back: its summary read from ML Metadata and TFMA, its facts, figures and HTML page."""
