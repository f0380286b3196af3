"""Wall time of the Beam components (ingestion, statistics, Transform) with 1 and 2 DirectRunner workers.

Runs the whole pipeline on the full default data once per setting, side by side in one process
run, each in a fresh output directory (no cache), training 1 epoch. Prints each Beam component's
wall time and the ratio. Run: .venv/bin/python bench/beam_workers.py [--workers 1 2]
"""

import argparse
import io
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cnnpipe.runners import local_runner  # noqa: E402
from cnnpipe.pipeline.config import PipelineConfig  # noqa: E402

BEAM_COMPONENTS = ("ImageExampleGen", "StatisticsGen", "Transform")


def beam_args(workers: int) -> tuple[str, ...]:
    """In-memory for one worker (the default); one process per worker otherwise."""
    mode = "in_memory" if workers == 1 else "multi_processing"
    return (f"--direct_running_mode={mode}", f"--direct_num_workers={workers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    seconds = {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as output:
            config = PipelineConfig.from_options(epochs=1, output_dir=output, beam_args=beam_args(workers))
            seconds[workers] = local_runner.run(config, out=io.StringIO())
        print(f"{workers} worker(s): " + ", ".join(f"{c} {seconds[workers][c]:.1f}s" for c in BEAM_COMPONENTS),
              flush=True)
    print(f"\n{'component':16}" + "".join(f"{w:>10} w" for w in args.workers) + "   ratio")
    first, last = args.workers[0], args.workers[-1]
    for component in (*BEAM_COMPONENTS, "together"):
        times = {w: sum(seconds[w][c] for c in BEAM_COMPONENTS) if component == "together" else seconds[w][component]
                 for w in args.workers}
        print(f"{component:16}" + "".join(f"{times[w]:10.1f} s" for w in args.workers)
              + f"   {times[first] / times[last]:.2f}x")


if __name__ == "__main__":
    main()
