"""Flags generated from settings dataclasses: a field made with `core.options.option` declares its flag, default,
help and `--help` group; `add_options` adds those flags to a subcommand and `settings_from` reads them back."""

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

from cnnpipe.core.options import GROUPS, flag_of, options_of, value_parser

if TYPE_CHECKING:
    from cnnpipe.pipeline.config import PipelineConfig


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` as argparse wants it: bad text becomes a usage error that quotes the parser's message."""
    def parse_flag(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse_flag.__name__ = parse.__name__  # argparse names the parser in "invalid <name> value"
    return parse_flag


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_flag(group: argparse._ArgumentGroup, field: dataclasses.Field, default: Any) -> None:
    """The flag a settings field declares; its default is shown in its help, not given to argparse: a flag not given
    is left out of the parsed options and the field keeps its default."""
    meta = field.metadata
    shown = meta["default_help"] or ("" if isinstance(default, bool) or default in (None, {}) else _shown(default))
    text = f"{meta['help']} (default {shown})" if meta["help"] and shown else meta["help"] or f"default {shown}"
    kwargs: dict[str, Any] = dict(dest=field.name, help=text, default=argparse.SUPPRESS)
    if meta["required"]:
        kwargs.update(required=True, help=meta["help"])
    if isinstance(default, bool):
        kwargs["action"] = "store_false" if default else "store_true"
    else:
        kwargs.update(type=argparse_type(value_parser(field)), choices=meta["choices"], metavar=meta["metavar"])
        if meta["repeat"]:
            kwargs["action"] = "append"
    group.add_argument(*filter(None, (meta["short"], flag_of(field))), **kwargs)


def add_options(command: argparse.ArgumentParser, fields: Iterable[tuple[dataclasses.Field, Any]],
                skip: Sequence[str] = (), only: Optional[Sequence[str]] = None) -> None:
    """The flags of `fields` (each with its default), by `--help` group; `only` those named, but those in `skip`."""
    fields = [(field, default) for field, default in fields
              if (only is None or field.name in only) and field.name not in skip]
    for name in GROUPS:
        in_group = [(field, default) for field, default in fields if field.metadata["group"] == name]
        if in_group:
            group = command.add_argument_group(name)
            for field, default in in_group:
                add_flag(group, field, default)


def fields_of(settings: type) -> list[tuple[dataclasses.Field, Any]]:
    """A settings dataclass's flag fields with their defaults."""
    defaults = settings()
    return [(field, getattr(defaults, field.name)) for field in options_of(settings)]


def given(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The options of `settings` given on the command line (those not given keep the dataclass's defaults)."""
    fields = {field.name: field for field in options_of(settings)}
    return {name: fields[name].metadata["repeat"](value) if fields[name].metadata["repeat"] else value
            for name, value in vars(args).items() if name in fields}


def add_pipeline_options(command: argparse.ArgumentParser, skip: Sequence[str] = (),
                         only: Optional[Sequence[str]] = None) -> None:
    """The flags of PipelineConfig's settings (`only` those, when given), but those in `skip`."""
    from cnnpipe.pipeline.config import PipelineConfig, flags  # noqa: PLC0415

    defaults = PipelineConfig().options()
    add_options(command, [(field, defaults[name]) for name, field in flags().items()], skip, only)


def pipeline_config(args: argparse.Namespace, default_beam_args: Sequence[str]) -> "PipelineConfig":
    """The PipelineConfig of the parsed options; options not given keep PipelineConfig's defaults."""
    from cnnpipe.pipeline.config import SECTIONS, PipelineConfig  # noqa: PLC0415

    options = {name: value for settings in (PipelineConfig, *SECTIONS.values())
               for name, value in given(args, settings).items()}
    return PipelineConfig.from_options(**{"beam_args": tuple(default_beam_args), **options})
