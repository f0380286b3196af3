"""Custom TFX components: image ingestion, the validation gate and the atomic pusher."""
