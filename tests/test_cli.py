"""The cnnpipe command: bad input ends in one readable message and a non-zero exit."""

import gzip
import subprocess
import sys

from conftest import cnnpipe, fashion_mnist, write_idx



def test_missing_data_directory(tmp_path):
    result = cnnpipe("run", "--data", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"cnnpipe: {tmp_path / 'nowhere'}: no such file or directory."


def test_wrong_idx_magic_names_the_file_without_a_traceback(tmp_path):
    data = tmp_path / "data"
    write_idx(str(data), "train", *fashion_mnist("train", 50))
    write_idx(str(data), "t10k", *fashion_mnist("t10k", 20))
    broken = data / "t10k-images-idx3-ubyte.gz"
    pixels = gzip.decompress(broken.read_bytes())
    broken.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + pixels[4:]))  # a labels file's magic number
    result = cnnpipe("run", "--data", str(data), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert str(broken) in result.stderr and "wrong IDX magic number 00000801" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_options(tmp_path):
    result = cnnpipe("run", "--help", cwd=tmp_path)
    for option in ("--data", "--format", "--model", "--epochs", "--batch-size", "--output", "--serving-dir",
                   "--min-accuracy", "--max-accuracy-drop", "--strategy", "--normalization"):
        assert option in result.stdout


def test_building_the_options_imports_no_tensorflow(tmp_path):
    """Every subcommand's --help is instant: the parser's defaults come from modules without TensorFlow."""
    check = ("import sys; from cnnpipe.cli import main; main.build_parser(); "
             "heavy = sorted({name.split('.')[0] for name in sys.modules} & {'tensorflow', 'tfx', 'apache_beam'}); "
             "print(heavy)")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_tuner_without_a_time_budget_is_refused_before_anything_runs(tmp_path):
    data = tmp_path / "data"
    write_idx(str(data), "train", *fashion_mnist("train", 50))
    write_idx(str(data), "t10k", *fashion_mnist("t10k", 20))
    result = cnnpipe("run", "--data", str(data), "--tune", "2", "--tune-minutes", "0", "--output",
                     str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("cnnpipe: --tune 2 --tune-minutes 0: give a number of trials (0: no tuning) and "
                                     "a positive time budget in minutes.")
    assert not (tmp_path / "out" / "pipeline").exists()


def test_runs_names_what_is_missing(tmp_path):
    result = cnnpipe("runs", "--output", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"cnnpipe: {tmp_path / 'nowhere'}: no metadata.sqlite here; give the --output "
                                     "directory of a `cnnpipe run` (default cnnpipe-output).")
