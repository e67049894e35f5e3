"""The ``telnyx-nb`` command line: usage, version, the sandbox server in the foreground and detached."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

from telnyx_nb import __version__

from waiting import timeout, wait_until

COMMAND = [shutil.which("telnyx-nb") or sys.executable, *([] if shutil.which("telnyx-nb") else ["-m", "telnyx_nb.cli"])]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout(60))


def test_bare_command_prints_usage_and_exits_2():
    done = run()
    assert done.returncode == 2
    assert done.stderr.startswith("usage: telnyx-nb") and "choose a command" in done.stderr


def test_version_and_help_are_plain_text():
    assert run("--version").stdout.strip() == f"telnyx-nb {__version__}"
    help_text = run("--help").stdout
    assert "``" not in help_text and "telnyx-nb sandbox --detach" in help_text


def test_a_port_in_use_is_one_line_not_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("sandbox", "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "in use" in done.stderr


def test_detach_exports_a_running_sandbox_for_another_shell(tmp_path):
    env_file = tmp_path / "sandbox.env"
    done = run("sandbox", "--detach", "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines()
                   if line.startswith("export "))
    assert set(exports) == {"TELNYX_BASE_URL", "TELNYX_API_KEY", "TELNYX_PUBLIC_KEY", "TELNYX_CONNECTION_ID",
                            "TELNYX_SANDBOX_PID"}
    assert env_file.read_text() == "".join(f"export {k}={v}\n" for k, v in exports.items())
    assert env_file.stat().st_mode & 0o777 == 0o600
    pid = int(exports["TELNYX_SANDBOX_PID"])
    try:
        import telnyx

        client = telnyx.Telnyx(base_url=exports["TELNYX_BASE_URL"], api_key=exports["TELNYX_API_KEY"], max_retries=0)
        call = client.calls.dial(connection_id=exports["TELNYX_CONNECTION_ID"], to="+15550100", from_="+15550199")
        assert call.data.call_control_id.startswith("v3:")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _running(pid), timeout=20, what="the detached sandbox to stop on SIGTERM")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:          # a zombie has exited
        return stat.read().split()[2] != "Z"


def test_detach_reports_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run("sandbox", "--detach", "--port", str(taken.getsockname()[1]))
    assert done.returncode == 1 and "did not start" in done.stderr and "in use" in done.stderr
