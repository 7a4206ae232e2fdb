"""``/playground`` in a real headless browser (Chromium from the OS packages; ``scripts/test.sh`` installs it where
it can): the page loads its example, calls the service and renders kept text highlighted and dropped text struck
through, with per-document ranks, token counts and the cost saved."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from ctxcompress_service import Settings, build_app, build_engine
from ctxcompress_service.testing import ServiceThread

from ctxcompress import Compressor
from ctxcompress.pool import ModelPool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (scripts/test.sh installs it when run as root)")


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran (virtual time waits while the page's fetches are pending)."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    command += ["--virtual-time-budget=30000", "--dump-dom", url]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_the_playground_shows_what_was_kept_and_dropped(tiny_scorer) -> None:  # noqa: ANN001
    pool = ModelPool(device="cpu")
    pool.register("scorer", "smollm2-135m", tiny_scorer)
    settings = Settings(_env_file=None, device=["cpu"], preload_models=[], warmup=False)
    app = build_app(settings, engine_factory=lambda s: build_engine(s, [Compressor(pool=pool)]))
    with ServiceThread(app) as service:
        dom = rendered_dom(f"{service.url}/playground?example&autorun&method=llmlingua&rate=0.4")
    assert 'data-state="done"' in dom, dom[-3000:]
    documents = re.findall(r'<div class="doc[^"]*" data-index="(\d)"><h3>([^<]*)</h3>', dom)
    assert [index for index, _ in documents] == ["0", "1", "2", "3"]
    assert all(re.search(r"\d+ → \d+ tokens", head) for _, head in documents)
    assert dom.count("<mark>") >= 4 and dom.count("<del>") >= 4  # kept and dropped text in every document
    origin = int(re.search(r'<b id="origin">(\d+)</b>', dom).group(1))
    compressed = int(re.search(r'<b id="compressed">(\d+)</b>', dom).group(1))
    assert compressed < origin and re.search(r'<b id="saved">\$0\.\d+</b>', dom)
