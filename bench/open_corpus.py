"""The open corpus (``../shared/data/open``) scored by the champions of a tracking store: per-case table and
per-class counts, judged by ``tests/open_corpus.py`` (the same code as the quality test).

    python -m bench.open_corpus --tracking-uri sqlite:///workspace/demo/mlflow.db
    python -m bench.open_corpus --tracking-uri URI --out /tmp/oc    # keep the workspaces somewhere else

Workspaces go to ``--out`` (default ``bench/out/open_corpus``; each run replaces them).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bench.make_capture import OUT_DIR
from tests.open_corpus import OPEN_DATA, run_corpus, table


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 0 (it measures, it does not judge the counts), 2 when the corpus is missing."""
    ap = argparse.ArgumentParser(prog="python -m bench.open_corpus", description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", required=True, help="MLflow store whose @champion models score the captures")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "open_corpus", help="where the per-capture workspaces go")
    ap.add_argument("--root", type=Path, default=OPEN_DATA, help="corpus directory holding MANIFEST.tsv")
    args = ap.parse_args(argv)
    if not (args.root / "MANIFEST.tsv").is_file():
        print(f"no open corpus at {args.root} (expected <repo>/../shared/data/open/MANIFEST.tsv)", file=sys.stderr)
        return 2
    shutil.rmtree(args.out, ignore_errors=True)
    t = time.perf_counter()
    outcomes = run_corpus(args.out, args.tracking_uri, args.root)
    print(table(outcomes))
    print(f"\n{len(outcomes)} captures in {time.perf_counter() - t:.1f} s; workspaces under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
