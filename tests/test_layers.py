"""The import layers of .importlinter hold: pipeline > components > robustness | serving > models | retrieval >
attacks > core, no cycles, serving independent of models, and a core that imports no TensorFlow, TFX, Beam or gRPC."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_import_layers_hold():
    lint_imports = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout
    analyzed = int(result.stdout.split("Analyzed ")[1].split(" files")[0])
    assert analyzed > 50  # the whole package, not an empty one
