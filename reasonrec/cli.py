"""The command line every job shares: `--config FILE` (repeatable: layered in order), `key.sub=value` overrides,
`--help-config`."""

from __future__ import annotations

import argparse
import sys
from typing import TypeVar

from pydantic import BaseModel

from reasonrec.config import ConfigError, describe, load_config

T = TypeVar("T", bound=BaseModel)


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", metavar="FILE", help=(
        "YAML config file (see configs/); repeat to layer files, e.g. --config configs/beauty.yaml "
        "--config configs/overlays/quick.yaml (later files win, overrides last)"))
    parser.add_argument("--help-config", action="store_true", help="print every config key and exit")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return parser


def resolve_config(model: type[T], args: argparse.Namespace, extra_overrides: list[str] | None = None) -> T:
    """Config from the --config files in order + flag-derived overrides + positional overrides (later wins);
    exits 2 on error."""
    if args.help_config:
        print("\n".join(describe(model)))
        sys.exit(0)
    try:
        return load_config(model, args.config, [*(extra_overrides or []), *args.overrides])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
