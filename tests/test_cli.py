"""The ``telnyx-nb`` command line: usage, version, the sandbox server in the foreground and detached."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from telnyx_nb import __version__

from waiting import timeout, wait_until

#: The console script installed next to this interpreter (the README's .venv/bin/telnyx-nb), not
#: whatever ``telnyx-nb`` is first on PATH.
SCRIPT = Path(sys.executable).with_name("telnyx-nb")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "telnyx_nb.cli"]


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


def test_detach_never_prints_an_older_env_file(tmp_path):
    """--env-file names a file that exists from an earlier run (mode 0644): a failed start
    prints nothing to eval and leaves it; a good one replaces it, mode 0600."""
    env_file = tmp_path / "sandbox.env"
    env_file.write_text("echo I-WAS-EVALED\n")
    env_file.chmod(0o644)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run("sandbox", "--detach", "--port", str(taken.getsockname()[1]), "--env-file", str(env_file))
    assert done.returncode == 1 and done.stdout == "" and "did not start" in done.stderr
    done = run("sandbox", "--detach", "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    pid = int(next(line.split("=")[1] for line in done.stdout.splitlines() if "TELNYX_SANDBOX_PID" in line))
    try:
        assert "I-WAS-EVALED" not in done.stdout and f"TELNYX_SANDBOX_PID={pid}" in env_file.read_text()
        assert env_file.stat().st_mode & 0o777 == 0o600
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _running(pid), timeout=20, what="the detached sandbox to stop on SIGTERM")


def test_bad_ports_and_env_file_directories_are_named():
    for port in ("99999", "-5", "http"):
        done = run("sandbox", "--port", port)
        assert done.returncode == 2 and "a port is a number from 0 to 65535" in done.stderr, done.stderr
    done = run("sandbox", "--env-file", "/nonexistent-dir/x.env")
    assert done.returncode == 1 and "--env-file /nonexistent-dir/x.env" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_refuses_a_session_dir_that_is_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    done = run("demo", "--session-dir", str(target))
    assert done.returncode == 2 and f"{target} is a file" in done.stderr and "Traceback" not in done.stderr
    assert target.read_text() == "mine"
