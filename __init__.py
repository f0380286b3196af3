"""cnnpipe: a TFX pipeline that turns labelled images into a CNN served by TF Serving."""
