"""Prepare a dataset: convert a source to the canonical format and write the evaluation protocol.

    python jobs/prepare_data.py --source synthetic --out artifacts/datasets/synthetic
    python jobs/prepare_data.py --config configs/ml-latest-small.yaml
    python jobs/prepare_data.py --source amazon_p5 --path ../shared/data/amazon-p5/sports --out artifacts/datasets/sports
    python jobs/prepare_data.py --config configs/synthetic.yaml seed=7 splits.protocols='[loo]'
    python jobs/prepare_data.py --list-downloads

Writes <out>/{manifest.json, interactions/items/users.parquet, splits/..., prepare_report.json} and prints a
summary. Exits 1 with a message naming file/line/field on input it cannot interpret (an empty or header-only
file, a missing column, bytes that are not the file's encoding, ...), or when more rows are quarantined than
`max_quarantine_share` allows. Nothing is written to <out> until the whole run succeeded, so a failed run
leaves an earlier dataset there as it was and adds only <out>/prepare_report.failed.json (the error, and what
was read and quarantined before it).
"""

from __future__ import annotations

import json
import sys

from reasonrec.cli import job_parser, resolve_config
from reasonrec.data.download import list_datasets
from reasonrec.data.errors import DataFormatError
from reasonrec.data.prepare import prepare, summary_lines
from reasonrec.data.prepare_config import PrepareConfig

# Flags that are shorthands for config keys (the issue-facing CLI); positional key=value overrides win.
FLAG_KEYS = {"source": "source.kind", "path": "source.path", "images": "source.images", "out": "out",
             "name": "name", "seed": "seed", "download": "source.download", "mirror": "source.mirror"}


def main(argv: list[str] | None = None) -> dict:
    parser = job_parser(__doc__)
    for flag, key in FLAG_KEYS.items():
        parser.add_argument(f"--{flag}", help=f"sets {key}")
    parser.add_argument("--list-downloads", action="store_true", help="list downloadable public data sets")
    args = parser.parse_args(argv)
    if args.list_downloads:
        for line in list_datasets():
            print(line)
        sys.exit(0)
    # Flag values are quoted so a path such as "2024" stays a string; pydantic still turns "7" into seed 7.
    flag_overrides = [f"{key}={json.dumps(getattr(args, flag))}" for flag, key in FLAG_KEYS.items()
                      if getattr(args, flag) is not None]
    if args.source and not args.name and not args.config:
        flag_overrides.insert(0, f"name={json.dumps(args.source)}")
    cfg = resolve_config(PrepareConfig, args, flag_overrides)

    try:
        report = prepare(cfg)
    except (DataFormatError, ValueError) as err:  # bad input or a protocol the data cannot support
        print(f"prepare_data: {err}", file=sys.stderr)
        sys.exit(1)
    print("\n".join(summary_lines(report)))
    return report


if __name__ == "__main__":
    main()
