"""Prepared model folders: complete or absent, and readable by every user (an image prepares them as root and
serves them as uid 10001)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ctxcompress import models
from ctxcompress.errors import ModelNotPrepared


def test_a_prepared_folder_is_readable_by_other_users(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    def build(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
        (folder / "model.safetensors").chmod(0o600)  # as the converter's temp file left it

    monkeypatch.setitem(models._CONVERTED, "smollm2", build)
    registry = models.ModelRegistry(home=tmp_path, convert_on_first_use=False)
    with pytest.raises(ModelNotPrepared):
        registry.resolve("smollm2-135m")  # a service never converts inside a request
    folder = Path(registry.prepare("smollm2-135m"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in folder.iterdir())
    assert registry.cached_dir("smollm2-135m") == folder and registry.resolve("smollm2-135m") == str(folder)
