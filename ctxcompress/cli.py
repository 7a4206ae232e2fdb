"""``ctxcompress`` command line: ``serve | compress | corpus | models | eval | bench | calibrate-attention``.

Each subcommand lives in its own module exposing ``configure(parser)`` and ``run(args) -> int``; modules that
belong to an optional extra are imported only when their subcommand runs (or asks for ``--help``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# subcommand → (module, extra that provides it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str | None, str]] = {
    "compress": ("ctxcompress.commands.compress", None, "compress one request (JSON on stdin or --input)"),
    "models": ("ctxcompress.commands.models", None, "list or prepare the configured models"),
    "serve": ("ctxcompress_service.cli", "server", "run the REST service and OpenAI-compatible proxy"),
    "corpus": ("ctxcompress.corpus.cli", None, "pre-compress a corpus (JSONL/Parquet), locally or on Ray"),
    "eval": ("ctxcompress_eval.cli", "eval", "evaluate methods and baselines on real data"),
    "bench": ("ctxcompress_eval.bench", "eval", "throughput benchmark against llmlingua"),
    "calibrate-attention": (
        "ctxcompress_eval.attention_calibration",
        "eval",
        "fit the attention method's layer_weights on labelled questions",
    ),
}


def _load(name: str):  # noqa: ANN202 - returns a module
    module, extra, _ = SUBCOMMANDS[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        hint = f" (pip install 'ctxcompress[{extra}]')" if extra else ""
        raise SystemExit(f"ctxcompress {name}: unavailable: {exc}{hint}") from exc


_ML_STACK = {"torch", "transformers", "sentence_transformers", "tokenizers", "numpy", "safetensors", "gguf"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ctxcompress", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.print_help() if not argv else parser.parse_args(argv)
        return 2
    name = argv[0]
    module = _load(name)
    command_parser = argparse.ArgumentParser(prog=f"ctxcompress {name}", description=SUBCOMMANDS[name][2])
    module.configure(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except ImportError as exc:  # the base install is the thin front: say what to install, no traceback
        if exc.name not in _ML_STACK and "ctxcompress[ml]" not in str(exc):
            raise
        print(f"ctxcompress {name}: needs the ML stack: pip install 'ctxcompress[ml]' ({exc})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
