"""Write the service's OpenAPI spec: ``python -m ctxcompress_service.openapi [PATH]`` (default: stdout).

The committed copy is ``service/openapi.json``; a unit test fails when it differs from the app's spec (which
carries the API's own checks: ``schema_constraints.py``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["openapi_spec", "render"]


def openapi_spec() -> dict[str, Any]:
    """The spec of an app built with default settings (no engine is started)."""
    from ctxcompress_service.app import build_app
    from ctxcompress_service.settings import Settings

    return build_app(Settings(_env_file=None)).openapi()


def render() -> str:
    return json.dumps(openapi_spec(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv:
        with open(argv[0], "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
