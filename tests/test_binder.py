"""The Binder files (``binder/``), checked statically: what repo2docker reads is there and says what it should.

repo2docker itself reads them in ``.ci/run`` (``repo2docker --no-build --debug``, which prints the
Dockerfile it would build); here: the Python version, ``postBuild`` (executable, stops on the first
error, installs this package from the repository root, and writes JupyterLab's notification
settings, news and update checks off, where and as JupyterLab's own settings loader reads them),
``requirements.txt`` (requirements only, no local paths, so repo2docker can install it before
copying the repository) and the notebook the Binder link opens.
"""

import os
import re
import shlex
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
#: The notebook the README's Binder link opens (``?urlpath=lab/tree/<this>``).
BADGE_NOTEBOOK = "notebooks/01-quickstart.ipynb"
#: The JupyterLab plugin whose settings postBuild writes.
NOTIFICATION_PLUGIN = "@jupyterlab/apputils-extension:notification"


def _post_build() -> str:
    return (BINDER / "postBuild").read_text()


def _settings_written() -> dict[str, str]:
    """Each file postBuild writes with a ``cat > FILE <<'TAG'`` here-document: its path (as written,
    ``${HOME}`` unexpanded, variables it set earlier substituted) -> its text."""
    text = _post_build()
    variables = dict(re.findall(r'^(\w+)="([^"]*)"$', text, flags=re.M))
    written = {}
    for target, _tag, body in re.findall(r'^cat > "?([^"\s]+)"? <<\'(\w+)\'\n(.*?)^\2$', text, flags=re.M | re.S):
        for name, value in variables.items():
            target = target.replace(f"${{{name}}}", value)
        written[target] = body
    return written


def test_runtime_is_python_311_and_pyproject_allows_it():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime == "python-3.11", runtime
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert "3.11" in SpecifierSet(requires), requires


def test_post_build_is_executable_stops_on_errors_and_installs_the_package():
    path = BINDER / "postBuild"
    assert os.access(path, os.X_OK), f"{path} is not executable"
    lines = [line.strip() for line in _post_build().splitlines()]
    assert lines[0].startswith("#!") and "bash" in lines[0], lines[0]
    commands = [line for line in lines[1:] if line and not line.startswith("#")]
    assert commands[0].startswith("set -e"), f"postBuild does not start with set -e: {commands[0]!r}"
    installs = [shlex.split(line) for line in commands if re.search(r"\bpip install\b", line)]
    assert any(words[-1] == "." for words in installs), f"no `pip install .` (from the repo root) in {installs}"


def test_requirements_are_requirements_without_local_paths():
    lines = [line.split("#")[0].strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    for line in filter(None, lines):
        assert not line.startswith(("-e", ".", "/")), f"a local path in binder/requirements.txt: {line!r}"
        Requirement(line)                 # raises InvalidRequirement on anything else


def test_post_build_turns_off_jupyterlab_news_where_jupyterlab_reads_it(tmp_path):
    """The files postBuild writes, put under a temporary HOME and read back by JupyterLab's own settings
    loader (which drops a whole file that fails the plugin's schema, with a warning)."""
    from jupyterlab_server.settings_utils import get_settings

    for target, text in _settings_written().items():
        assert target.startswith("${HOME}/"), f"postBuild writes {target} outside HOME"
        path = tmp_path / target.removeprefix("${HOME}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    lab = Path(sys.prefix) / "share" / "jupyter" / "lab"
    user_settings = tmp_path / ".jupyter" / "lab" / "user-settings"     # JupyterLab's default, under HOME
    found, warnings = get_settings(str(lab / "settings"), str(lab / "schemas"), str(user_settings),
                                   schema_name=NOTIFICATION_PLUGIN)
    assert warnings == [None], warnings
    assert found["settings"] == {"fetchNews": "false", "checkForUpdates": False}, found["raw"]


def test_the_badge_notebook_exists():
    assert (ROOT / BADGE_NOTEBOOK).is_file(), BADGE_NOTEBOOK
    # Once the README carries the Binder link, every notebook it opens must exist.
    readme = (ROOT / "README.md").read_text()
    for urlpath in re.findall(r"mybinder\.org/v2/gh/[^)\s]*?urlpath=lab/tree/([^)\s&]+)", readme):
        assert (ROOT / urlpath).is_file(), f"the README's Binder link opens {urlpath}, which does not exist"
