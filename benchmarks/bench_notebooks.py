"""How long each tutorial notebook takes to run top to bottom, and how big it is once run.

Each ``notebooks/*.ipynb`` is executed headless with nbclient, as "Run All" would, against the
sandbox (``TELNYX_API_KEY`` removed), on a ``python3`` kernel of this interpreter (installed
into a temporary prefix with ``ipykernel install``), in a temporary working directory, with
matplotlib's inline backend as in Jupyter. Reported per notebook: ``seconds`` (wall time of the
execution, kernel start included) and ``executed_kb`` (the notebook with its outputs: figures,
tables, audio players), and for the run: ``cores`` and ``load_1min`` (the machine's load
average when it ended: these timings are wall-clock and share the machine).
Issue 12's figure: each notebook in under 60 s. Tests (``tests/test_notebooks.py``) check that
they run and what they show, never how fast.

Run: ``python benchmarks/bench_notebooks.py [NAME ...]``; progress goes to stderr, the last line
printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    args = parser.parse_args()
    paths = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if not args.names or p.name.startswith(tuple(args.names))]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as tmp:
        prefix = Path(tmp) / "prefix"
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
                       check=True, capture_output=True)
        os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
        os.environ.pop("TELNYX_API_KEY", None)
        os.environ.pop("MPLBACKEND", None)
        for path in paths:
            work = Path(tmp) / path.stem
            work.mkdir()
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                             resources={"metadata": {"path": str(work)}})
            start = time.monotonic()
            client.execute()
            seconds = time.monotonic() - start
            executed = len(nbformat.writes(nb).encode()) / 1024
            results[path.stem] = {"seconds": round(seconds, 1), "executed_kb": round(executed, 1)}
            print(f"{path.name}: {seconds:.1f} s, {executed:.0f} kB executed", file=sys.stderr, flush=True)
    print(json.dumps({"bench": "notebooks", "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
                      "notebooks": results}))


if __name__ == "__main__":
    main()
