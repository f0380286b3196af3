"""The `cnnpipe` command line: every subcommand's flags, most of them generated from settings dataclasses."""
