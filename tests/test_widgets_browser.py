"""The call panel clicked in a real JupyterLab, in headless Chromium driven by Playwright.

The test starts JupyterLab on 127.0.0.1 with a token (``--allow-root``: CI runs as root), in
directories of its own (config, data, runtime, settings, workspaces: nothing of the user's is
read or written), with the news popup and update check off. It opens a notebook through a
workspace of its own (``/lab/workspaces/<id>/tree/panel.ipynb?reset``), waits until the kernel
is idle, runs the cell that starts a sandbox call and shows ``tnb.CallPanel``, clicks the
streaming and transcription toggles in the page, and checks in the page that the counters
move and the transcript fills with both tracks, each labelled. The screenshot is saved in the test's ``tmp_path``.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``, installed by ``.ci/run``), driven by
the PyPI ``playwright`` package, whose driver ships in its wheel; no browser is ever downloaded
(``playwright install`` is never run). Without chromium or playwright the test is skipped,
saying which is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

from waiting import timeout, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium): "
                       "`apt-get install -y chromium` (.ci/run does) to run the JupyterLab browser test"),
    pytest.mark.timeout(300),
]

NOTEBOOK_CELL = """\
import telnyx_nb as tnb
sb = tnb.Sandbox().start()
rx = tnb.Receiver(public_key=sb.public_key).start()
client = sb.client()
ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to="+15550100", from_="+15550199").data.call_control_id
rx.wait_for("call.answered", ccid)
panel = tnb.CallPanel(client, rx, ccid)
panel
"""

#: The number before " frames" in the counters view (0 when none yet), summed over tracks.
FRAMES_JS = """() => {
    const el = document.querySelector('.tnb-counters');
    if (!el) return 0;
    return [...el.innerText.matchAll(/([\\d,]+) frames(?!\\/)/g)]
        .reduce((sum, m) => sum + parseInt(m[1].replace(/,/g, ''), 10), 0);
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server of this test: (base URL, token, root dir)."""
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_PLATFORM_DIRS": "1"}
    log = (tmp_path / "jupyterlab.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.poll() is None, f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60, what="JupyterLab to answer")
        yield base, token, root
    finally:
        os.killpg(server.pid, signal.SIGTERM)            # the server shuts its kernels down
        try:
            server.wait(timeout(20))
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_panel_clicked_in_jupyterlab(lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (PyPI) is not installed")
    base, token, root = lab
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "panel.ipynb")
    screenshot = tmp_path / "jupyterlab-call-panel.png"
    profile = tmp_path / "chromium-profile"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout(60) * 1000)
            page.goto(f"{base}/lab/workspaces/{uuid.uuid4().hex}/tree/panel.ipynb?reset&token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            # the kernel connected and idle before any cell runs
            page.wait_for_selector(".jp-StatusBar-Widget >> text=/Python 3.*\\| Idle/", timeout=timeout(120) * 1000)
            page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".jp-Notebook .jp-Cell .jp-InputPrompt >> text=/\\[[*0-9]+\\]/")
            streaming = page.wait_for_selector("button.tnb-toggle-streaming", timeout=timeout(60) * 1000)
            transcription = page.wait_for_selector("button.tnb-toggle-transcription")
            assert page.evaluate(FRAMES_JS) == 0
            streaming.click()
            transcription.click()
            page.wait_for_function("() => document.querySelector('button.tnb-toggle-streaming')"
                                   ".innerText.includes('Streaming: on')")
            page.wait_for_function(f"() => ({FRAMES_JS})() > 0")
            first = page.evaluate(FRAMES_JS)
            page.wait_for_function(f"() => ({FRAMES_JS})() > {first} + 50")       # the counters move
            page.wait_for_function("() => document.querySelectorAll('.tnb-transcript .tnb-line').length >= 2")
            # both tracks (the transcription options default to "both"), each with its label
            page.wait_for_function("() => { const t = document.querySelector('.tnb-transcript').innerText;"
                                   " return t.includes('inbound (far end): ')"
                                   " && t.includes('outbound (this side): '); }", timeout=timeout(60) * 1000)
            text = page.inner_text(".tnb-transcript")
            assert "inbound (far end): " in text and "outbound (this side): " in text
        finally:
            page.screenshot(path=str(screenshot), full_page=True)      # on a failure too: what the page showed
            browser.close()
    assert screenshot.stat().st_size > 10_000
    shutil.rmtree(profile, ignore_errors=True)
    print(f"screenshot: {screenshot}")
