"""A catalog's item table: row i is item i, its source file, its class name ("" for none) and a thumbnail (PNG). The
same table holds a few example queries."""

import dataclasses
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

FILE = "items.parquet"  # in the model's assets.extra/search/
EXAMPLES_FILE = "examples.parquet"  # beside it: a few query images, for the search page to offer
COLUMNS = ("source", "class_name", "thumbnail")


@dataclasses.dataclass(frozen=True)
class Items:
    sources: Sequence[str]
    class_names: Sequence[str]
    thumbnails: Sequence[bytes]

    def __len__(self) -> int:
        return len(self.sources)


def write(items: Items, path: str) -> None:
    table = pa.table({"source": pa.array(items.sources, pa.string()),
                      "class_name": pa.array(items.class_names, pa.string()),
                      "thumbnail": pa.array(items.thumbnails, pa.binary())})
    pq.write_table(table, path)


def read(path: str) -> Items:
    columns = pq.read_table(path, columns=list(COLUMNS)).to_pydict()
    return Items(columns["source"], columns["class_name"], columns["thumbnail"])
