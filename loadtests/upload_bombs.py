"""Peak memory of the candidate import on bomb files (issue 23 §3), for a table.

    .venv/bin/python -m loadtests.upload_bombs                       # this checkout
    .venv/bin/python -m loadtests.upload_bombs --pythonpath OLD_TREE # another checkout

Each file of ``tests/integration/test_upload_bombs.py`` is made in a temp dir and read by
``sheets.read`` in a fresh child (address space capped at 3 GiB), which reports the
refusal's code and how far the read raised its peak RSS; then the error answer of a CSV of
5,020 rows × 64 columns is measured (its encoded problem body, no database involved).
Nothing is sent over a network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.test_organisers import as_csv, person
from tests.integration.test_upload_bombs import BOMBS, measure

ANSWER = """
import sys
from voting_service.ledger import candidate_import, sheets
from voting_service.web.http import problem_body
sheet = sheets.read(open(sys.argv[1], "rb").read(), "csv")
parsed = candidate_import.parse(sheet, "pepper")
print(len(problem_body(candidate_import.Rejected(parsed.errors))))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pythonpath", help="checkout whose voting_service is measured")
    args = parser.parse_args()
    print(f"{'file':<34} {'bytes':>10} {'outcome':<16} {'peak MiB':>9} {'s':>6}")
    with tempfile.TemporaryDirectory(prefix="upload-bombs-") as tmp:
        for name, (make, kind, _) in BOMBS.items():
            path = make(Path(tmp) / f"bomb.{kind}")
            found = measure(path, kind, args.pythonpath)
            print(f"{name:<34} {path.stat().st_size:>10,} {found['outcome']:<16}"
                  f" {found['peak_mib']:>9.1f} {found['seconds']:>6.2f}", flush=True)
            path.unlink()
        rows = [person(n, f"人{n}", "南京市") + ["x"] * 48 for n in range(1, 5020)]
        csv_path = Path(tmp) / "errors.csv"
        csv_path.write_text(as_csv(rows), encoding="utf-8")
        env = dict(os.environ)
        if args.pythonpath:
            env["PYTHONPATH"] = args.pythonpath
        done = subprocess.run([sys.executable, "-c", ANSWER, str(csv_path)], env=env,
                              cwd=args.pythonpath, capture_output=True, timeout=300,
                              check=True)
        print(json.dumps({"csv_5020x64_error_answer_bytes": int(done.stdout.strip()),
                          "csv_bytes": csv_path.stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
