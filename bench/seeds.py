"""The default configuration trained with several seeds through the pipeline: test accuracy, precision@10 and whether
search finds the item itself (recall@1 and @10 of catalog items photographed again, and the items tied with a query's
first result) as mean ± sd, beside the validation score the Trainer chose its epoch by, the epochs it ran and its
time.

Each seed is a whole `cnnpipe run` in its own process, on the default data (or `--data`), with `--seed N`,
`--attacks none` (attacks measure a model, they do not change it) and an output directory of its own; the other
settings are the defaults unless given after `--`. Figures are read back from ML Metadata as the summary reads them.
A seed whose output directory already holds a finished run is read, not run again.

    .venv/bin/python bench/seeds.py [--seeds 0,1,2] [--output /tmp/cnnpipe-seeds] [-- RUN OPTION ...]
"""

import argparse
import os
import statistics
import subprocess
import sys

from cnnpipe.models import best_epoch
from cnnpipe.pipeline.metadata import run_outputs, wall_times
from cnnpipe.pipeline.output_dir import metadata_path
from cnnpipe.report import summary

PIPELINE = "fashion_mnist"


def run(seed: int, output: str, options: list[str]) -> None:
    """`cnnpipe run` for `seed` into `output`, unless a finished run is there; its output goes to output/bench.log."""
    if os.path.exists(metadata_path(output)) and summary.summarize(metadata_path(output), PIPELINE).accuracy:
        return
    os.makedirs(output, exist_ok=True)
    command = [sys.executable, "-m", "cnnpipe.cli.main", "run", "--output", output, "--seed", str(seed),
               "--attacks", "none", *options]
    print(f"seed {seed}: {' '.join(command[2:])}", flush=True)
    with open(os.path.join(output, "bench.log"), "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code not in (0, 2):  # 2: not pushed, still measured
        raise SystemExit(f"seed {seed}: cnnpipe run exited {code}; see {output}/bench.log")


def figures(output: str) -> dict[str, float]:
    """What the seed's run measured: test accuracy, precision@10 and the item figures, the kept validation score,
    epochs, seconds."""
    measured = summary.summarize(metadata_path(output), PIPELINE)
    kept = best_epoch.read_report(run_outputs(metadata_path(output), PIPELINE)[1]["model_run"].uri)
    search = {name: measured.retrieval.get(key, float("nan")) for name, key in (
        ("test P@10", "precision_at_10"), ("item R@1", "instance_recall_at_1"), ("item R@10", "instance_recall_at_10"),
        ("ties", "ties_with_first"))}
    return {"test accuracy": measured.accuracy, **search,
            "validation score": kept["scores"][kept["kept_epoch"] - 1], "kept epoch": kept["kept_epoch"],
            "epochs run": kept["epochs_run"], "Trainer s": wall_times(metadata_path(output), PIPELINE)["Trainer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    parser.add_argument("--output", default="/tmp/cnnpipe-seeds", help="a directory per seed under it")
    parser.add_argument("options", nargs="*", help="after --: more `cnnpipe run` options")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = {}
    for seed in seeds:
        output = os.path.join(args.output, f"seed-{seed}")
        run(seed, output, args.options)
        rows[seed] = figures(output)
    names = list(next(iter(rows.values())))
    print(f"\n{'seed':>6} " + " ".join(f"{name:>16}" for name in names))
    for seed, row in rows.items():
        print(f"{seed:>6} " + " ".join(f"{row[name]:>16.4f}" if isinstance(row[name], float) else f"{row[name]:>16}"
                                      for name in names))
    means = {name: statistics.mean(row[name] for row in rows.values()) for name in names}
    spread = {name: statistics.stdev(row[name] for row in rows.values()) if len(rows) > 1 else 0.0 for name in names}
    print(f"{'mean':>6} " + " ".join(f"{means[name]:>16.4f}" for name in names))
    print(f"{'sd':>6} " + " ".join(f"{spread[name]:>16.4f}" for name in names))


if __name__ == "__main__":
    main()
