"""Regenerate strom/protocol/messages from Kafka's JSON message schemas (run from the repository root).

The schemas default to ../shared/kafka-schemas beside the repository; `--check` changes nothing and
exits 1 when the committed output differs from what the schemas produce.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.codegen import render_all, stale_files, write_all

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEMAS = REPO_ROOT.parent / "shared" / "kafka-schemas"
DEFAULT_OUT = REPO_ROOT / "strom" / "protocol" / "messages"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.codegen", description=__doc__)
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS, help="folder of Kafka JSON schemas")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output package folder")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the output is not up to date"
    )
    args = parser.parse_args(argv)
    if not args.schemas.is_dir():
        parser.error(f"schema folder not found: {args.schemas}")
    files = render_all(args.schemas)
    if args.check:
        outdated = [
            name
            for name, text in files.items()
            if not (args.out / name).exists() or (args.out / name).read_text(encoding="utf-8") != text
        ]
        outdated += [path.name for path in stale_files(args.out, files)]
        for name in outdated:
            print(f"out of date: {name}")
        return 1 if outdated else 0
    changed = write_all(args.out, files)
    print(f"{len(files)} files generated, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
