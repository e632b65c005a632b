"""Uploads are bounded by what they expand to (issue 23 §3): bomb files made here, read in a
child process whose peak resident memory is measured (Linux ``VmHWM``, reset just before
the read), each refused with its own code
under the stated bound; and a file with a quarter of a million errors gets a short answer
that lists the first 200 and counts them all."""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN, Harness
from tests.integration.test_organisers import HEADER, as_csv, person
from voting_service.ledger import sheets

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
TYPES = f"""<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="{sheets.XLSX_TYPE}.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/sharedStrings.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>
</Types>"""
PARTS = {
    "[Content_Types].xml": TYPES,
    "_rels/.rels": f'<Relationships xmlns="{PKG}"><Relationship Id="rId1" Type="{REL}/'
                   'officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
                       '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels":
        f'<Relationships xmlns="{PKG}"><Relationship Id="rId1" Type="{REL}/worksheet"'
        ' Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="'
        f'{REL}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
}
ONE_CELL = f'<worksheet xmlns="{MAIN}"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c>' \
           '</row></sheetData></worksheet>'
MIB = 1024 * 1024

CHILD = """
import json, resource, sys, time
from voting_service.ledger import sheets
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a runaway reader stops here
body = open(sys.argv[1], "rb").read()

def status(field):
    with open("/proc/self/status") as lines:  # KiB
        return next(int(x.split()[1]) for x in lines if x.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak (VmHWM) starts again from what is resident now
before = status("VmRSS")
started = time.perf_counter()
try:
    sheet = sheets.read(body, sys.argv[2])
    outcome = f"read {len(sheet.rows)} rows"
except MemoryError:
    outcome = "MemoryError"
except Exception as exc:
    outcome = getattr(exc, "code", type(exc).__name__)
peak = status("VmHWM")
print(json.dumps({"outcome": outcome, "peak_mib": (peak - before) / 1024,
                  "seconds": time.perf_counter() - started}))
"""


def measure(path: Path, kind: str, pythonpath: str | None = None) -> dict[str, Any]:
    """Read ``path`` with ``sheets.read`` in a fresh child: its outcome (the refusal's code)
    and its peak resident memory above what the child held just before the read."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), kind], env=env,
                          cwd=pythonpath, capture_output=True, timeout=120, check=True)
    found: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return found


def write_xlsx(path: Path, sheet: Any, shared: Any = None) -> Path:
    """An XLSX (the parts Excel needs) whose sheet and shared strings are written from
    iterables of byte chunks, so that a bomb never sits whole in the test's memory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, text in PARTS.items():
            if shared is None:  # no part, so no mention of it (openpyxl would refuse)
                text = re.sub(r'<Override PartName="/xl/sharedStrings.xml"[^>]*/>'
                              r'|<Relationship Id="rId2"[^>]*/>', "", text)
            zf.writestr(name, text)
        for name, chunks in (("xl/worksheets/sheet1.xml", sheet),
                             ("xl/sharedStrings.xml", shared)):
            if chunks is None:
                continue
            with zf.open(name, "w", force_zip64=True) as out:
                for chunk in ([chunks] if isinstance(chunks, bytes | str) else chunks):
                    out.write(chunk.encode() if isinstance(chunk, str) else chunk)
    return path


def long_string(path: Path, mib: int = 200) -> Path:
    """One shared string of ``mib`` MiB (a 409 KB file of this kind took 1.09 GB)."""
    def chunks() -> Any:
        yield f'<sst xmlns="{MAIN}" count="1" uniqueCount="1"><si><t>'
        for _ in range(mib):
            yield b"A" * MIB
        yield "</t></si></sst>"
    return write_xlsx(path, ONE_CELL, chunks())


def wide_row(path: Path, cells: int, spread: int = 10**9) -> Path:
    """One row of ``cells`` numeric cells; with values random over a wide ``spread`` the
    part compresses like a real sheet (the ratio check does not catch it; the cell bound
    must), with ``spread=1`` it is the small file of the issue's example."""
    rng = random.Random(7)

    def chunks() -> Any:
        yield f'<worksheet xmlns="{MAIN}"><sheetData><row r="1">'
        for start in range(0, cells, 10_000):
            yield "".join(f"<c><v>{rng.randrange(spread)}</v></c>"
                          for _ in range(min(10_000, cells - start)))
        yield "</row></sheetData></worksheet>"
    return write_xlsx(path, chunks())


def deflated(path: Path, mib: int = 20) -> Path:
    """A sheet part of ``mib`` MiB of blanks, under the size bound but ~1000:1."""
    def chunks() -> Any:
        yield f'<worksheet xmlns="{MAIN}"><sheetData>'
        for _ in range(mib):
            yield b" " * MIB
        yield "</sheetData></worksheet>"
    return write_xlsx(path, chunks())


def long_cell(path: Path) -> Path:
    text = "".join(chr(0x4E00 + i % 2000) for i in range(sheets.MAX_CELL_TEXT + 1))
    return write_xlsx(path, ONE_CELL, f'<sst xmlns="{MAIN}"><si><t>{text}</t></si></sst>')


def many_rows(path: Path) -> Path:
    return write_xlsx(path, f'<worksheet xmlns="{MAIN}"><sheetData>'
                      + "".join(f'<row r="{n}"><c t="inlineStr"><is><t>x</t></is></c></row>'
                                for n in range(1, 5100)) + "</sheetData></worksheet>")


def wide_csv(path: Path) -> Path:
    """15.6 MB of one CSV row: as many cells as an upload can carry."""
    path.write_bytes(b"\xe5\xa7\x93\xe5\x90\x8d" + b",ab" * 5_200_000)
    return path


def many_csv_cells(path: Path) -> Path:
    """5,000 records of 100 fields: each record under the field bound, the sheet over the
    cell bound."""
    path.write_bytes(("姓名" + ",ab" * 99 + "\r\n").encode() * 5000)
    return path


BOMBS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "long shared string (200 MiB)": (long_string, "xlsx", "xlsx_too_large"),
    "2 million cells in a row": (lambda p: wide_row(p, 2_000_000, 1), "xlsx", "xlsx_ratio"),
    "450,000 cells in a row": (lambda p: wide_row(p, 450_000), "xlsx", "too_many_cells"),
    "20 MiB part at 1000:1": (deflated, "xlsx", "xlsx_ratio"),
    "one cell over the text bound": (long_cell, "xlsx", "cell_too_long"),
    "5,100 rows": (many_rows, "xlsx", "too_many_rows"),
    "5.2 million cells in a CSV row": (wide_csv, "csv", "too_many_columns"),
    "500,000 cells of CSV": (many_csv_cells, "csv", "too_many_cells"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_bomb_is_refused_with_its_code_under_the_memory_bound(
    name: str, tmp_path: Path
) -> None:
    make, kind, code = BOMBS[name]
    path = make(tmp_path / f"bomb.{kind}")
    assert path.stat().st_size < sheets.MAX_FILE_BYTES  # each fits in an upload
    found = measure(path, kind)
    assert found["outcome"] == code, found
    assert found["peak_mib"] < sheets.IMPORT_PEAK_MIB, found


def test_the_largest_real_sheet_reads_under_the_memory_bound(tmp_path: Path) -> None:
    """5,000 candidates with long deeds, the most an upload carries: read whole, and under
    the same bound."""
    rng = random.Random(3)
    text = [chr(0x4E00 + rng.randrange(8000)) for _ in range(6000)]
    header = "".join(f'<c t="inlineStr"><is><t>{h}</t></is></c>' for h in HEADER)

    def chunks() -> Any:
        yield f'<worksheet xmlns="{MAIN}"><sheetData><row r="1">{header}</row>'
        for n in range(2, 5002):
            start = rng.randrange(4000)
            deeds = "".join(text[start:start + 1500])
            cells = [str(n), f"人{n}", "男", "南京市", "制造业", "某厂", "钳工", "南京市",
                     "", "", deeds[:300], deeds]
            yield f'<row r="{n}">' + "".join(
                f'<c t="inlineStr"><is><t>{c}</t></is></c>' for c in cells) + "</row>"
        yield "</sheetData></worksheet>"
    path = write_xlsx(tmp_path / "real.xlsx", chunks())
    assert path.stat().st_size < 16 * MIB
    found = measure(path, "xlsx")
    assert found["outcome"] == "read 5001 rows", found
    assert found["peak_mib"] < sheets.IMPORT_PEAK_MIB, found


async def test_an_answer_lists_200_errors_and_counts_them_all(harness: Harness) -> None:
    """5,020 rows × 64 columns, each row with 48 cells under no header: 240,000 errors."""
    r = await harness.client.post("/api/v1/admin/campaigns", headers=ADMIN, json={
        "id": "t2026", "title": "t", "opens_at": "2026-07-01T00:00:00+08:00",
        "closes_at": "2026-07-31T00:00:00+08:00", "status": "draft", "candidates": []})
    assert r.status_code == 201, r.text
    rows = [person(n, f"人{n}", "南京市") + ["x"] * 48 for n in range(1, 5020)]
    body = as_csv(rows).encode()
    assert len(body) < 4 * MIB
    r = await harness.client.post("/api/v1/admin/campaigns/t2026/candidates/import",
                                  content=body, headers={**ADMIN, "Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["code"] == "import_rejected"
    problem = r.json()
    assert len(problem["errors"]) == 200
    assert problem["errors_total"] == 5019 * 48
    assert problem["errors"][0]["code"] == "unknown_column"
    assert len(r.content) < 100_000, len(r.content)


def test_bounds_hold_for_a_zip_that_is_not_an_xlsx() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in range(sheets.MAX_ZIP_MEMBERS + 1):
            zf.writestr(f"f{n}", "")
    with pytest.raises(sheets.SheetError) as refused:
        sheets.read(buf.getvalue(), "xlsx")
    assert refused.value.code == "xlsx_too_large"
    with pytest.raises(sheets.SheetError) as refused:
        sheets.read(b"PK\x03\x04" + b"\0" * 100, "xlsx")
    assert refused.value.code == "bad_file"
