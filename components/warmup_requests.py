"""The warmup requests pushed with every version (TF Serving's assets.extra/tf_serving_warmup_requests): a few real
eval examples through every signature the model exports, as PredictionLog records, so that a server (TF Serving or
`cnnpipe serve`) runs each signature once before the version is AVAILABLE and its first live requests do not pay for
TensorFlow's lazy initialisation. The push check writes them in its fresh process, from the examples it checked.
"""

from typing import Sequence

import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, input_pb2, predict_pb2, prediction_log_pb2

from cnnpipe.core import names

BATCH_SIZES = (1, 4)  # each signature is warmed up at each: TensorFlow prepares its kernels per input shape


def _predict(signature: str, inputs: tf.Tensor) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    request.inputs[names.INPUTS[signature]].CopyFrom(tf.make_tensor_proto(inputs))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def _classify(records: Sequence[bytes]) -> prediction_log_pb2.PredictionLog:
    request = classification_pb2.ClassificationRequest(
        input=input_pb2.Input(example_list=input_pb2.ExampleList(
            examples=[tf.train.Example.FromString(record) for record in records])))
    request.model_spec.signature_name = names.CLASSIFY
    return prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=request))


def warmup_logs(signatures: Sequence[str], records: tf.Tensor, images: tf.Tensor,
                pixels: tf.Tensor) -> list[prediction_log_pb2.PredictionLog]:
    """Requests for each signature in `signatures` (those the model exports), one per batch size in BATCH_SIZES:
    serialized tf.Examples (`records`), their encoded `images`; `predict_pixels` takes one image's `pixels`
    ([1, H, W, C] float32) alone."""
    batched = {names.SERVING_DEFAULT: records, names.PREDICT_IMAGE: images, names.EMBED: images, names.SEARCH: images,
               names.SEARCH_VECTOR: images}
    logs = [_predict(names.PREDICT_PIXELS, pixels)] if names.PREDICT_PIXELS in signatures else []
    for size in BATCH_SIZES:
        logs += [_predict(signature, inputs[:size]) for signature, inputs in batched.items() if signature in signatures]
        if names.CLASSIFY in signatures:
            logs.append(_classify(records[:size].numpy()))
    return logs
