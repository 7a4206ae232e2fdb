"""Engine settings: one set of defaults (EngineOptions, ServingOptions), reachable from the library, the
service's CTXCOMPRESS_* settings and the CLI flags; the two token budgets have distinct names."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from ctxcompress_service.app import build_engine
from ctxcompress_service.settings import Settings

from ctxcompress.commands.engine_flags import add_engine_flags, engine_overrides
from ctxcompress.engines.options import EngineOptions
from ctxcompress.serving.options import ServingOptions


def test_invalid_engine_options_name_the_setting() -> None:
    with pytest.raises(ValueError, match="decoder"):
        EngineOptions(decoder="vllm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pass_tokens"):
        EngineOptions(max_pass_tokens=0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        ServingOptions(max_batch_tokens=0)
    assert EngineOptions().pass_tokens("cuda") > EngineOptions().pass_tokens("cpu")
    assert EngineOptions(max_pass_tokens=512).pass_tokens("cuda") == 512
    assert EngineOptions().encoder_dtype_name("cuda") == "float16"  # tensor cores; fp32 matmuls would not use them
    assert EngineOptions().encoder_dtype_name("cpu") == "float32"  # float16 is slower on CPU
    assert EngineOptions(encoder_dtype="float32").encoder_dtype_name("cuda") == "float32"
    assert "encoder_dtype" not in EngineOptions().scorer_arguments()
    assert "encoder_graphs" not in EngineOptions().scorer_arguments()
    with pytest.raises(ValueError, match="encoder_dtype"):
        EngineOptions(encoder_dtype="int8")  # type: ignore[arg-type]


def test_service_settings_take_their_defaults_from_the_options_and_reach_the_engine(monkeypatch) -> None:  # noqa: ANN001
    defaults = Settings()
    assert defaults.engine_options() == EngineOptions()
    assert defaults.serving_options() == ServingOptions()
    monkeypatch.setenv("CTXCOMPRESS_DEVICE", "cpu")
    monkeypatch.setenv("CTXCOMPRESS_MAX_PASS_TOKENS", "512")
    monkeypatch.setenv("CTXCOMPRESS_DECODER", "transformers")
    monkeypatch.setenv("CTXCOMPRESS_GRAPHS", "off")
    monkeypatch.setenv("CTXCOMPRESS_ENCODER_GRAPHS", "on")
    monkeypatch.setenv("CTXCOMPRESS_MAX_BATCH_TOKENS", "999")
    engine = build_engine(Settings())
    pool = engine.compressors[0].pool
    assert pool.options == EngineOptions(max_pass_tokens=512, decoder="transformers", graphs="off", encoder_graphs="on")
    assert pool.max_pass_tokens == 512
    assert engine.options.max_batch_tokens == 999  # the serving batch: a different budget, a different name


def test_a_scorer_built_from_options_runs_as_they_say(tiny_scorer) -> None:  # noqa: ANN001
    from ctxcompress.engines.scorer import CausalLMScorer
    from tests.tiny_models import tiny_llama

    tokenizer = tiny_scorer.tokenizer  # a model of its own: the shared fixture's model stays untouched
    options = EngineOptions(max_pass_tokens=64, decoder="transformers", graphs="off")
    scorer = CausalLMScorer(tiny_llama(tokenizer, seed=0), tokenizer, **options.scorer_arguments())
    assert scorer.decoder.name == "transformers" and scorer.max_pass_tokens == 64 and scorer.graphs is None
    fused = CausalLMScorer(
        tiny_llama(tokenizer, seed=0), tokenizer, **EngineOptions(decoder="fused").scorer_arguments()
    )
    ids = [[5, 6, 7, 8, 9, 10]]
    assert fused.decoder.name == "fused"
    assert abs(float(fused.token_nll(ids)[0][1:].sum() - scorer.token_nll(ids)[0][1:].sum())) < 1e-3


def test_cli_flags_map_onto_engine_options() -> None:
    parser = argparse.ArgumentParser()
    add_engine_flags(parser)
    assert engine_overrides(parser.parse_args([])) == {}
    args = parser.parse_args(["--max-pass-tokens", "2048", "--kernels", "torch", "--graphs", "off", "--compile"])
    assert EngineOptions(**engine_overrides(args)) == EngineOptions(
        max_pass_tokens=2048, kernels="torch", graphs="off", compile=True
    )


def test_compress_cli_names_a_missing_input_in_one_line(tmp_path) -> None:  # noqa: ANN001
    missing = tmp_path / "missing.json"
    run = subprocess.run(
        [sys.executable, "-m", "ctxcompress.cli", "compress", "--input", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and str(missing) in run.stderr and len(run.stderr.strip().splitlines()) == 1


def _fake_host(monkeypatch: pytest.MonkeyPatch, cores: int, gib: float) -> None:
    """A host with ``cores`` cores and two GPUs: device 0 of 200 GiB, device 1 of ``gib``."""
    import types

    import torch
    from ctxcompress_service import settings as settings_module

    monkeypatch.setattr(settings_module, "host_cores", lambda: cores)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def properties(index: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total_memory=gib * 2**30 if index else 200 * 2**30)

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)


@pytest.mark.parametrize(
    ("devices", "gib", "cores", "expected"),
    [
        (["auto"], 141, 16, 10),
        (["auto"], 141, 8, 5),
        (["cuda:1"], 80, 16, 5),
        (["cuda:0", "cuda:1"], 40, 32, 2),
        (["auto"], 24, 16, 1),
        (["auto"], 141, 1, 1),
        (["cpu"], 141, 16, 1),
    ],
)
def test_auto_workers_follow_gpu_memory_and_host_cores(
    monkeypatch: pytest.MonkeyPatch, devices, gib, cores, expected
) -> None:
    _fake_host(monkeypatch, cores, gib)
    settings = Settings(_env_file=None, device=devices)
    assert settings.workers == "auto" and settings.worker_count() == expected
    assert Settings(_env_file=None, device=devices, workers=3).worker_count() == 3


@pytest.mark.parametrize(
    ("devices", "workers", "cores", "expected"),
    [
        (["auto"], "auto", 16, 1),  # GPUs: one thread per worker process
        (["cuda:0", "cuda:1"], 4, 32, 1),
        (["cpu"], "auto", 16, 16),  # CPU: the host cores shared out among the workers
        (["cpu"], 3, 16, 5),
        (["cpu"], 4, 2, 1),
        (["cuda:0", "cpu"], 2, 8, 4),  # any CPU device: the CPU rule
    ],
)
def test_auto_torch_threads_are_one_per_gpu_worker_and_the_cores_shared_on_cpu(
    monkeypatch: pytest.MonkeyPatch, devices, workers, cores, expected
) -> None:
    _fake_host(monkeypatch, cores, 141)
    settings = Settings(_env_file=None, device=devices, workers=workers)
    assert settings.torch_threads == "auto" and settings.torch_thread_count() == expected
    assert Settings(_env_file=None, device=devices, torch_threads=3).torch_thread_count() == 3


def test_the_service_sets_its_torch_threads_when_it_builds_the_engine() -> None:
    import torch
    from ctxcompress_service.app import build_engine

    before = torch.get_num_threads()
    try:
        build_engine(Settings(_env_file=None, device=["cpu"], torch_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_serve_uses_growable_allocator_segments_unless_the_operator_chose() -> None:
    from ctxcompress_service.cli import set_serving_defaults

    environ: dict[str, str] = {}
    set_serving_defaults(environ)
    assert environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert environ["TOKENIZERS_PARALLELISM"] == "false" and environ["HF_HUB_OFFLINE"] == "1"
    for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):  # torch reads either name
        chosen = {name: "max_split_size_mb:128", "TOKENIZERS_PARALLELISM": "true"}
        set_serving_defaults(chosen)
        assert chosen[name] == "max_split_size_mb:128" and chosen["TOKENIZERS_PARALLELISM"] == "true"
        assert len([key for key in chosen if key.startswith("PYTORCH")]) == 1
