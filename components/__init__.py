"""Custom TFX components: image ingestion, the validation gate, the atomic pusher and the adversarial examples."""
