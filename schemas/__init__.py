"""Curated TFDV schemas, one `<name>.pbtxt` per known data set."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent


def schema_path(name: str) -> str:
    """Path of the curated schema `name` (e.g. "fashion_mnist")."""
    path = SCHEMA_DIR / f"{name}.pbtxt"
    if not path.exists():
        known = sorted(p.stem for p in SCHEMA_DIR.glob("*.pbtxt"))
        raise FileNotFoundError(f"no curated schema '{name}' in {SCHEMA_DIR}; known: {known}")
    return str(path)
