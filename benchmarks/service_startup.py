"""What starting the service costs before it serves: importing `fabricad.service.app` in a fresh
interpreter, its wall time and the resident memory it leaves, for this checkout and, side by side
in alternating rounds, for another commit of the repository (e.g. the one before a change).

    python benchmarks/service_startup.py --against 554adc5 [--rounds 5]

The other commit is checked out into a temporary git worktree and imported from there
(PYTHONPATH), with the same interpreter and packages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import emit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import json, resource, sys, time\n"
    "started = time.perf_counter()\n"
    "import fabricad.service.app, fabricad\n"
    "seconds = time.perf_counter() - started\n"
    "heavy = sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'albumentations') if m in sys.modules)\n"
    "print(json.dumps({'seconds': seconds, 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,\n"
    "                  'heavy': heavy, 'where': fabricad.__file__}))\n"
)


def probe(root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=root, env=env, timeout=300)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["where"]).is_relative_to(root), f"imported {result['where']} instead of {root}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="a commit to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(other), args.against], check=True)
        try:
            runs: dict[str, list[dict]] = {args.against: [], "this checkout": []}
            probe(REPO), probe(other)  # warm the file cache for both
            for _ in range(args.rounds):
                runs[args.against].append(probe(other))
                runs["this checkout"].append(probe(REPO))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(other)], check=False)
    lines = [
        f"Command: `python benchmarks/service_startup.py --against {args.against} --rounds {args.rounds}` "
        f"({date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU threads; medians of {args.rounds} alternating rounds)\n",
        "| code | import fabricad.service.app, s | peak RSS, MB | heavy modules loaded |", "|---|---|---|---|",
    ]
    for name, rows in runs.items():
        lines.append(f"| {name} | {statistics.median(r['seconds'] for r in rows):.2f} | "
                     f"{statistics.median(r['rss_mb'] for r in rows):.0f} | {', '.join(rows[0]['heavy']) or 'none'} |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
