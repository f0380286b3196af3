"""The project's TFX components: image ingestion (`ingestion/`), the validation gate (with the check for the same
image twice, `duplicates`), the served model as the baseline (`served_model`), the embedding index, the adversarial
examples, the blessing (`blessing/`), the push check and the atomic pusher."""
