"""Settings declared once: a dataclass field made with `option` carries its default and its command-line help,
and `cli/flags.py` generates each `cnnpipe` flag from it. No argparse here, only what a flag needs to know.

The value parsers below turn a flag's text into the field's type; they raise ValueError on bad text.
"""

import ast
import dataclasses
import typing
from typing import Any, Callable, Optional

# The `--help` sections, in order
GROUPS = ("data", "model and training", "blessing", "robustness", "visual search", "outputs", "Kubeflow", "serving",
          "batching (as TF Serving's --enable_batching)", "calling", "rollout", "run", "runs", "skew",
          "canary", "models")


def option(default: Any = None, help: str = "", group: str = "", *, flag: Optional[str] = None,  # noqa: A002
           parse: Optional[Callable[[str], Any]] = None, choices: Optional[tuple] = None,
           metavar: Optional[str] = None, repeat: Optional[Callable[[list], Any]] = None,
           default_help: Optional[str] = None, short: Optional[str] = None, required: bool = False) -> Any:
    """A dataclass field that is also a `cnnpipe` flag (`--field-name` unless `flag` says otherwise; `short`, e.g.
    "-o", names it too).

    `parse` reads the flag's text (default: the field's int or float type, else str); a bool is an on/off
    switch; `repeat` makes the flag repeatable and turns the list of its values into the field's value (e.g. `dict`).
    `default_help` describes the default in `--help` when the value alone would not (e.g. for None). A `required`
    flag must be given (its default only stands in for it in code).
    """
    assert group in GROUPS, group
    metadata = dict(help=help, group=group, flag=flag, parse=parse, choices=choices, metavar=metavar, repeat=repeat,
                    default_help=default_help, short=short, required=required)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def options_of(settings: type) -> list[dataclasses.Field]:
    """The fields of a settings dataclass that are flags, in declaration order."""
    return [field for field in dataclasses.fields(settings) if "group" in field.metadata]


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def value_parser(field: dataclasses.Field) -> Callable[[str], Any]:
    """What reads one value of the flag: the option's `parse`, else the field's type (X of Optional[X]), else str."""
    if field.metadata["parse"]:
        return field.metadata["parse"]
    kinds = [kind for kind in typing.get_args(field.type) or (field.type,) if kind in (int, float)]
    return kinds[0] if kinds and not field.metadata["repeat"] else str


def names(text: str) -> tuple[str, ...]:
    """Comma-separated names: "a, b" -> ("a", "b")."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def numbers(text: str) -> tuple[float, ...]:
    """Comma-separated numbers: "0.05,0.1" -> (0.05, 0.1)."""
    try:
        return tuple(float(part) for part in names(text))
    except ValueError:
        raise ValueError("expected numbers separated by commas, e.g. 0.05,0.1") from None


def shape(text: str) -> tuple[int, int, int]:
    """Height, width and channels: "28,28,1" -> (28, 28, 1)."""
    try:
        parts = tuple(int(part) for part in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ValueError("expected H,W,C, e.g. 28,28,1")
    return parts


def key_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE a Python literal (number, string, tuple); bare words stay strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError("expected KEY=VALUE, e.g. width=32")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def count(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, not {text}")
    return value


def share(text: str) -> float:
    """A share in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(f"a share in (0, 1], not {text}")
    return value


def seconds(text: str) -> float:
    """Seconds, 0 or more."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(f"expected seconds, 0 or more, not {text}")
    return value


def host_port(text: str) -> str:
    """HOST:PORT, e.g. localhost:8501."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("expected HOST:PORT, e.g. localhost:8501")
    return text
