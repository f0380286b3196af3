"""TF Serving's Classify, Regress and MultiInference APIs: tf.Examples in (a list, or a list with a context every
example shares), a classification or regression signature run on them as serialized records, its results out.

A signature qualifies by its keys, as on TF Serving with its default flags (the method-name check off): one input
`inputs`; for classification the outputs `classes` (strings) and/or `scores` (floats), [batch, classes] each; for
regression one output `outputs`, [batch] or [batch, 1] floats.
"""

import numpy as np
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, input_pb2, model_pb2, regression_pb2

from cnnpipe.core.names import SERVING_DEFAULT
from cnnpipe.serving.errors import invalid, unimplemented
from cnnpipe.serving.servable import Servable

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"
SignatureDef = meta_graph_pb2.SignatureDef


def example_count(request_input: input_pb2.Input) -> int:
    kind = request_input.WhichOneof("kind")
    return len(getattr(request_input, kind).examples) if kind else 0


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """The input's examples as serialized tf.Example records (each after the context's features, so that an
    example's own feature wins), as a string array [examples]."""
    kind = request_input.WhichOneof("kind")
    examples = getattr(request_input, kind).examples if kind else []
    if not examples:
        raise invalid("Input is empty.")
    context = request_input.example_list_with_context.context.SerializeToString() \
        if kind == "example_list_with_context" else b""
    return np.array([context + example.SerializeToString() for example in examples], dtype=object)


def _described(signature_def: SignatureDef) -> str:
    return text_format.MessageToString(signature_def, as_one_line=True)


def classification_outputs(signature_def: SignatureDef) -> tuple[str, ...]:
    """The output keys Classify reads of a signature, once it has checked the signature fits."""
    inputs, outputs = signature_def.inputs, signature_def.outputs
    if len(inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if len(outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(outputs)}")
    if INPUTS not in inputs:
        raise invalid(f"No classification inputs found in SignatureDef: {_described(signature_def)}")
    found = tuple(key for key in (CLASSES, SCORES) if key in outputs)
    if not found:
        raise invalid('Expected classification signature outputs to contain at least one of "classes" or '
                      f'"scores". Signature was: {_described(signature_def)}')
    return found


def regression_outputs(signature_def: SignatureDef) -> tuple[str, ...]:
    """The output key Regress reads of a signature, once it has checked the signature fits."""
    inputs, outputs = signature_def.inputs, signature_def.outputs
    if len(inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if len(outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if INPUTS not in inputs:
        raise invalid(f"No regression inputs found in SignatureDef: {_described(signature_def)}")
    if OUTPUTS not in outputs:
        raise invalid(f"No regression outputs found in SignatureDef: {_described(signature_def)}")
    return (OUTPUTS,)


def _matrix(values: np.ndarray, what: str, examples: int) -> None:
    if values.ndim != 2:
        raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got {list(values.shape)}")
    if what == CLASSES and values.dtype != object:
        raise invalid(f"Expected classes Tensor of DT_STRING. Got: {values.dtype}")
    if what == SCORES and values.dtype != np.float32:
        raise invalid(f"Expected scores Tensor of DT_FLOAT. Got: {values.dtype}")
    if len(values) != examples:
        raise invalid(f"Expected {what} output batch size of {examples}. Got: {len(values)}")


def classification_result(outputs: dict[str, np.ndarray], examples: int) -> classification_pb2.ClassificationResult:
    """Each example's classes (label and/or score) from a classification signature's outputs."""
    for what, values in outputs.items():
        _matrix(values, what, examples)
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. "
                      f"{scores.shape[1]}")
    result = classification_pb2.ClassificationResult()
    for row in range(examples):
        classifications = result.classifications.add()
        for column in range(next(iter(outputs.values())).shape[1]):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = classes[row, column]
            if scores is not None:
                entry.score = scores[row, column]
    return result


def regression_result(outputs: dict[str, np.ndarray], examples: int) -> regression_pb2.RegressionResult:
    """Each example's value from a regression signature's output."""
    values = outputs[OUTPUTS]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                      f"{list(values.shape)}")
    if len(values) != examples:
        raise invalid(f"Input batch size did not match output batch size: {examples} vs. {len(values)}")
    if values.dtype != np.float32:
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
    result = regression_pb2.RegressionResult()
    for value in values.reshape(-1).tolist():
        result.regressions.add(value=value)
    return result


def _signature_def(servable: Servable, signature_name: str) -> SignatureDef:
    key = signature_name or SERVING_DEFAULT
    if key not in servable.signature_defs:
        raise invalid(f"No signature was found with the name: {key}")
    return servable.signature_defs[key]


def _model_spec(servable: Servable, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name or SERVING_DEFAULT)
    spec.version.value = servable.version
    return spec


def _run(servable: Servable, jobs: list[tuple[SignatureDef, tuple[str, ...]]], request_input: input_pb2.Input,
         what: str) -> tuple[list[dict[str, np.ndarray]], int]:
    """Runs the signatures' outputs on the examples in one session call (each distinct input tensor fed the
    examples); returns each signature's outputs by key, and the number of examples."""
    examples = serialized_examples(request_input)
    feeds = {signature_def.inputs[INPUTS].name: examples for signature_def, _ in jobs}
    fetches = tuple(dict.fromkeys(signature_def.outputs[key].name for signature_def, keys in jobs for key in keys))
    by_name = dict(zip(fetches, servable.session.run(feeds, fetches, what)))
    outputs = [{key: by_name[signature_def.outputs[key].name] for key in keys} for signature_def, keys in jobs]
    return outputs, len(examples)


def classify(servable: Servable, request: classification_pb2.ClassificationRequest
             ) -> classification_pb2.ClassificationResponse:
    signature_def = _signature_def(servable, request.model_spec.signature_name)
    (outputs,), examples = _run(servable, [(signature_def, classification_outputs(signature_def))], request.input,
                                "Classify")
    return classification_pb2.ClassificationResponse(
        model_spec=_model_spec(servable, request.model_spec.signature_name),
        result=classification_result(outputs, examples))


def regress(servable: Servable, request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
    signature_def = _signature_def(servable, request.model_spec.signature_name)
    (outputs,), examples = _run(servable, [(signature_def, regression_outputs(signature_def))], request.input,
                                "Regress")
    return regression_pb2.RegressionResponse(model_spec=_model_spec(servable, request.model_spec.signature_name),
                                             result=regression_result(outputs, examples))


def check_tasks(request: inference_pb2.MultiInferenceRequest) -> model_pb2.ModelSpec:
    """The model spec every task of a MultiInference request names (one model for all); refuses a request without
    tasks, a task without a model name, or tasks naming different models."""
    if not request.tasks:
        raise invalid("MultiInferenceRequest must contain at least one task.")
    names = {task.model_spec.name for task in request.tasks}
    if "" in names:
        raise invalid("Found ModelSpec with an empty model name.")
    if len(names) > 1:
        raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    return request.tasks[0].model_spec


def multi_inference(servable: Servable, request: inference_pb2.MultiInferenceRequest
                    ) -> inference_pb2.MultiInferenceResponse:
    """Each task's classification or regression, all from one run of the model on the shared examples."""
    check_tasks(request)
    jobs, seen = [], set()
    for task in request.tasks:
        key = task.model_spec.signature_name or SERVING_DEFAULT
        if key in seen:
            raise invalid(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        if key not in servable.signature_defs:
            raise invalid(f"Requested signature not found in model graph: {key}")
        signature_def = servable.signature_defs[key]
        if task.method_name == CLASSIFY:
            jobs.append((signature_def, classification_outputs(signature_def)))
        elif task.method_name == REGRESS:
            jobs.append((signature_def, regression_outputs(signature_def)))
        else:
            raise unimplemented(f"Unsupported signature method_name: {task.method_name}")
    outputs, examples = _run(servable, jobs, request.input, "MultiInference")
    response = inference_pb2.MultiInferenceResponse()
    for task, task_outputs in zip(request.tasks, outputs):
        result = response.results.add(model_spec=_model_spec(servable, task.model_spec.signature_name))
        if task.method_name == CLASSIFY:
            result.classification_result.CopyFrom(classification_result(task_outputs, examples))
        else:
            result.regression_result.CopyFrom(regression_result(task_outputs, examples))
    return response

