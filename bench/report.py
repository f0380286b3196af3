"""Prints a bench's measured table and, when asked, writes it under the marker of its page in docs/."""

import os

MARKER = "<!-- table -->"
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def markdown_table(caption: str, columns: list[str], rows: list[list[str]]) -> str:
    """`caption`, a blank line, then a Markdown table."""
    lines = [caption, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def publish(table: str, doc_name: str, write: bool) -> None:
    """Prints `table`; with `write`, replaces what follows the marker in docs/`doc_name`."""
    print("\n" + table)
    if not write:
        return
    path = os.path.normpath(os.path.join(DOCS, doc_name))
    with open(path) as f:
        head = f.read().split(MARKER)[0]
    with open(path, "w") as f:
        f.write(f"{head}{MARKER}\n{table}\n")
    print(f"\nwrote {path}")
