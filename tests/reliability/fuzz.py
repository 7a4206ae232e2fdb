"""Schemathesis (v4) against the served OpenAPI spec: generated requests for every operation, positive (valid by
the schema) and negative (invalid by the schema), each response checked.

Checks: no 5xx (``not_a_server_error``), the status, content type, headers and body are the ones the spec
declares for that status, and schema-invalid data is rejected with a 4xx (``negative_data_rejection``).
``positive_data_acceptance`` is left out on purpose: schema-valid requests may still be semantically invalid
(unknown method or option name, all-blank documents, a budget too small for the question) and get a 422.
Failures are counted, not raised, so a run reports cases tried / failures over the whole budget of examples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable

__all__ = ["FUZZ_API_KEY", "FuzzReport", "fuzz_target", "run_fuzz"]

FUZZ_API_KEY = "fuzz-key"


@dataclass
class OperationReport:
    operation: str
    mode: str
    cases: int = 0
    failures: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failed_checks: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # first few failures, as curl commands
    note: str = ""


@dataclass
class FuzzReport:
    base_url: str
    max_examples: int
    seconds: float = 0.0
    operations: list[OperationReport] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(o.cases for o in self.operations)

    @property
    def failures(self) -> int:
        return sum(o.failures for o in self.operations)

    @property
    def server_errors(self) -> int:
        return sum(n for o in self.operations for s, n in o.statuses.items() if s.startswith("5"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "max_examples": self.max_examples,
            "seconds": round(self.seconds, 1),
            "cases": self.cases,
            "failures": self.failures,
            "server_errors": self.server_errors,
            "operations": [asdict(o) for o in self.operations],
        }


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]


def _fuzz_operation(
    operation: Any, mode: Any, base_url: str, max_examples: int, seed: int, headers: dict[str, str]
) -> OperationReport:
    report = OperationReport(operation.label, str(mode.value))
    checks = _checks()
    statuses: Counter[str] = Counter()
    failed: Counter[str] = Counter()

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers or None))
    def run(case: Any) -> None:
        report.cases += 1
        try:
            response = case.call(base_url=base_url, timeout=120)
        except Exception as exc:  # no response at all: a hang, reset or crash of the server
            report.failures += 1
            failed[f"no response: {type(exc).__name__}"] += 1
            return
        statuses[str(response.status_code)] += 1
        try:
            case.validate_response(response, checks=checks)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            report.failures += 1
            names = [getattr(f, "title", type(f).__name__) for f in getattr(exc, "exceptions", [exc])]
            for name in names:
                failed[str(name)] += 1
            if len(report.examples) < 5:
                report.examples.append(f"{response.status_code} {names}: {case.as_curl_command()}"[:2000])

    run = hypothesis_seed(seed)(run)  # a fixed seed: reproducible runs
    try:
        run()
    except Unsatisfiable:
        report.note = "no case can be generated in this mode"
    except Exception as exc:  # schemathesis refuses a mode it cannot satisfy (e.g. negative for no inputs)
        report.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    report.statuses = dict(statuses)
    report.failed_checks = dict(failed)
    return report


def run_fuzz(
    base_url: str,
    *,
    max_examples: int = 100,
    modes: tuple[str, ...] = ("positive", "negative"),
    seed: int = 0,
    api_key: str | None = None,
    schema_url: str | None = None,
) -> FuzzReport:
    """Fuzz every operation of the spec served at ``schema_url`` (default ``base_url + /openapi.json``).

    With ``api_key`` every case carries ``Authorization: Bearer <key>`` (serve with ``CTXCOMPRESS_API_KEYS``:
    the spec declares bearer auth, so a schema-invalid request is one with a bad body, not a missing key).
    """
    import schemathesis
    from schemathesis import GenerationMode

    started = time.monotonic()
    schema = schemathesis.openapi.from_url(schema_url or f"{base_url}/openapi.json")
    report = FuzzReport(base_url, max_examples)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            report.operations.append(
                _fuzz_operation(operation, GenerationMode(mode), base_url, max_examples, seed, headers)
            )
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def fuzz_target(scorer: Any) -> Iterator[str]:
    """The service on loopback, on ``scorer``, with an API key (``FUZZ_API_KEY``) and a fake OpenAI upstream behind
    the proxy; yields its base URL. One torch thread while it runs."""
    import torch
    from ctxcompress_service import Settings, build_app, build_engine
    from ctxcompress_service.testing import ServiceThread

    from ctxcompress import Compressor
    from ctxcompress.pool import ModelPool
    from tests.reliability.upstream import fake_openai

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", scorer)
    try:
        with ServiceThread(fake_openai()) as upstream:
            settings = Settings(
                _env_file=None,
                device=["cpu"],
                preload_models=[],
                warmup=False,
                default_method="llmlingua",
                api_keys=[FUZZ_API_KEY],
                upstream_url=f"{upstream.url}/v1",
                anthropic_upstream_url=upstream.url,
            )
            app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
            with ServiceThread(app) as service:
                yield service.url
    finally:
        torch.set_num_threads(before)
