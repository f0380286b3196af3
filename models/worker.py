"""One worker of a multi-worker Trainer: `python -m cnnpipe.models.worker FN_ARGS_JSON`.

Each worker process runs the same `run_fn` with `TF_CONFIG` naming the cluster and its own
task, and the `multi_worker` strategy in the Trainer's custom_config; the chief (worker 0)
writes the model. FN_ARGS_JSON holds the keyword arguments of TFX's `FnArgs`
(train_files, eval_files, transform_graph_path, serving_model_dir, model_run_dir, custom_config); the
examples are read as a TFX Trainer reads Transform's output.
"""

import json
import sys

from tfx.components.trainer.fn_args_utils import FnArgs

from cnnpipe.models.trainer import run_fn, tf_example_files


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        run_fn(FnArgs(**json.load(f), data_accessor=tf_example_files()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
