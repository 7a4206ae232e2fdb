"""The constraints the API enforces, written into its published OpenAPI schema.

Pydantic's schema of a request carries field types; the API also checks the method name, each method's options,
whether the method needs a question, the document count and "exactly one of rate / max_tokens".
:func:`install_request_constraints` writes those into the schema (JSON Schema ``enum``, ``if``/``then``,
``oneOf``), so a client generated from it, or a fuzzer, sends what the API accepts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install_request_constraints"]

_NONBLANK = {"type": "string", "pattern": "\\S"}


def _request_constraints(schema: dict[str, Any], default_method: str, max_documents: int) -> None:
    """Add the API's own checks to the ``CompressionRequest`` schema (in place)."""
    from ctxcompress.methods import method_class, method_names
    from ctxcompress.text.tokens import DEFAULT_TARGET_TOKENIZER

    props = schema["properties"]
    props["method"]["enum"] = method_names()
    props["documents"] |= {"minItems": 1, "maxItems": max_documents, "contains": _NONBLANK}
    rules = []
    for name in method_names():
        cls = method_class(name)
        options = cls.options_model.model_json_schema()
        options.pop("title", None)
        # Model options (scorer, encoder, ...) stay open strings: the operator's configuration names them
        # (GET /v1/models), and an unknown name gets a 422 that lists the configured ones.
        options["properties"]["target_tokenizer"]["enum"] = [DEFAULT_TARGET_TOKENIZER]  # the one shipped offline
        then: dict[str, Any] = {"properties": {"options": options}}
        if cls.required_options:
            options["required"] = list(cls.required_options)
            then["required"] = ["options"]
        if cls.needs_question:
            then["properties"]["question"] = _NONBLANK
            then["required"] = [*then.get("required", []), "question"]
        chosen = {"properties": {"method": {"const": name}}, "required": ["method"]}
        rules.append(
            {
                "if": {"anyOf": [chosen, {"not": {"required": ["method"]}}]} if name == default_method else chosen,
                "then": then,
            }
        )
    schema["allOf"] = rules


def _budget_constraints(schema: dict[str, Any]) -> None:
    """Exactly one of ``rate`` and ``max_tokens`` (the model validator's rule)."""
    schema["oneOf"] = [
        {"required": ["rate"], "properties": {"rate": {"type": "number"}}},
        {"required": ["max_tokens"], "properties": {"max_tokens": {"type": "integer"}}},
    ]


def install_request_constraints(app: Any, *, default_method: str, max_documents: int) -> None:
    """Make ``app.openapi()`` publish the constraints above (computed once, like FastAPI's own spec)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec["components"]["schemas"]
            _request_constraints(schemas["CompressionRequest"], default_method, max_documents)
            _budget_constraints(schemas["Budget"])
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi
