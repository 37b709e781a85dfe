"""Print (or write into the README) the README's demo table from a demo run's results.json.

    ufl demo --out ufl-demo                                   # the defaults: what the README shows
    python bench/demo_table.py ufl-demo/results.json          # print the table and the timing line
    python bench/demo_table.py ufl-demo/results.json --write README.md   # replace the table in place

The table sits between ``<!-- demo-table -->`` and ``<!-- /demo-table -->`` in README.md;
``tests/test_demo.py::test_readme_demo_table_matches_a_default_demo_run`` (marked slow) checks that
a default demo prints what it says, within rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ufl.demo import markdown_table, replace_readme_table, table_total
from ufl.io import atomic_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json of a `ufl demo` run")
    parser.add_argument("--write", type=Path, default=None, metavar="README",
                        help="replace the table between the markers in this file instead of printing it")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    if args.write is None:
        print(markdown_table(results))
        print(f"\n{table_total(results)}")
        return 0
    text = replace_readme_table(args.write.read_text(), results)
    with atomic_path(args.write) as tmp:
        Path(tmp).write_text(text)
    print(f"{args.write}: demo table replaced; {table_total(results)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
