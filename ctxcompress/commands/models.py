"""``ctxcompress models list | prepare``: show configured models and where they live; convert embedded ones."""

from __future__ import annotations

import argparse
import json

from ctxcompress.models import default_registry


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "prepare"], nargs="?", default="list")
    parser.add_argument("names", nargs="*", help="models to prepare (default: smollm2-135m, minilm-l6)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.action == "prepare":
        for name in args.names or ["smollm2-135m", "minilm-l6"]:
            print(f"{name}: {registry.resolve(name)}")
        return 0
    rows = []
    for name in registry.names():
        spec = registry.spec(name)
        local = registry.cached_dir(name)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "source": spec.source,
                "local_path": str(local) if local else None,
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<16} {'kind':<18} {'source':<20} local folder")
    for row in rows:
        where = row["local_path"] or "(not prepared; converted on first use)"
        print(f"{row['name']:<16} {row['kind']:<18} {row['source']:<20} {where}")
    return 0
