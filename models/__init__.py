"""The model side: feature keys, preprocessing_fn, Keras models, run_fn, serving signatures."""
