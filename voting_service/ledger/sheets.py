"""Reading the recommenders' spreadsheets: CSV (UTF-8 with or without BOM, GB18030) and XLSX.

A sheet comes back as rows of text cells, each with the row number the spreadsheet shows, so
an error can point at the cell an organiser sees.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

MAX_ROWS = 5000
MAX_COLUMNS = 64
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPES = ("text/csv", "application/csv", "text/plain")


# --- what an upload may expand to (issue 23 §3) ---------------------------------------
# Checked before or while the file is read, never after: an XLSX is a zip of XML parts, so a
# small upload can stand for gigabytes; the parts are read as streams and parsed as they
# come (expat), and the first bound crossed refuses the file. With these an import's peak
# memory stays under IMPORT_PEAK_MIB (measured by tests/integration/test_upload_bombs.py).
MAX_FILE_BYTES = 16 * 1024 * 1024
"""The file, by the HTTP route or the CLI (the HTTP body limit is the same 16 MiB)."""
MAX_CELL_TEXT = 32_768
"""Characters in one cell (主要事迹 may have 20,000; longer ones get the row's too_long)."""
MAX_CELLS = 400_000
"""Cells of a sheet, empty ones included (5,020 rows × 65 columns is 326,300)."""
MAX_ROW_CELLS = 1024
"""Fields of one CSV record, checked before the record is split (Excel writes as many as
the sheet's used width)."""
MAX_ZIP_MEMBERS = 256
MAX_PART_BYTES = 48 * 1024 * 1024
"""One XML part of an XLSX, decompressed."""
MAX_XLSX_BYTES = 64 * 1024 * 1024
"""The parts read (workbook, relations, shared strings, first sheet), decompressed."""
MAX_RATIO = 100
"""Decompressed : compressed, for a part over 1 MiB (real sheets: 3–30)."""
IMPORT_PEAK_MIB = 160
"""The stated bound of an import's peak memory above the process it runs in."""


class SheetError(ValueError):
    """The file cannot be read as a spreadsheet at all; ``code`` says why."""

    def __init__(self, message: str, code: str = "bad_file") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Sheet:
    rows: list[tuple[int, list[str]]]
    """``(row number as the spreadsheet shows it, cells)``; empty rows left out."""


def decode_csv(body: bytes, charset: str | None = None) -> str:
    """The declared charset if any; else UTF-8 (a BOM is dropped), else GB18030 — what Excel
    on Chinese Windows writes when it saves "CSV"."""
    if charset and charset.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        try:
            return body.decode(charset).removeprefix("\ufeff")
        except (LookupError, UnicodeDecodeError) as exc:
            raise SheetError(f"文件不是 {charset} 编码 (bad_encoding)", "bad_file") from exc
    if body.startswith(b"\xef\xbb\xbf"):
        try:
            return body[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SheetError("文件不是有效的 UTF-8 编码 (bad_encoding)", "bad_file") from exc
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return body.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise SheetError("无法识别文件编码，请另存为 UTF-8 或 GB18030 的 CSV (bad_encoding)",
                         "bad_file") from exc


_QUOTED = re.compile(r'"[^"]*"')


def _check_records(text: str) -> None:
    """Records and fields per record counted on the text without its quoted parts (where a
    comma or a line break is data), before ``csv`` splits a record into a list of fields:
    one line of 16 MiB of commas would be millions of them."""
    bare = _QUOTED.sub("", text)
    if bare.count("\n") > MAX_ROWS + 20:
        raise SheetError(f"文件超过 {MAX_ROWS} 行 (too_many_rows)", "too_many_rows")
    start = 0
    while start <= len(bare):
        end = bare.find("\n", start)
        end = len(bare) if end < 0 else end
        if bare.count(",", start, end) >= MAX_ROW_CELLS:
            raise SheetError(f"一行超过 {MAX_ROW_CELLS} 列 (too_many_columns)",
                             "too_many_columns")
        start = end + 1


def read_csv(body: bytes, charset: str | None = None) -> Sheet:
    text = decode_csv(body, charset)
    _check_records(text)
    rows: list[tuple[int, list[str]]] = []
    cells_seen = 0
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        # a record is one spreadsheet row, even when a cell holds line breaks
        for number, cells in enumerate(reader, start=1):
            if number > MAX_ROWS + 20:
                raise SheetError(f"文件超过 {MAX_ROWS} 行 (too_many_rows)", "too_many_rows")
            cells_seen += len(cells)
            if cells_seen > MAX_CELLS:
                raise SheetError(f"文件超过 {MAX_CELLS} 个单元格 (too_many_cells)",
                                 "too_many_cells")
            kept = [c.strip() for c in cells[:MAX_COLUMNS + 1]]
            if any(len(c) > MAX_CELL_TEXT for c in kept):
                raise SheetError(f"第 {number} 行有单元格超过 {MAX_CELL_TEXT} 字"
                                 " (cell_too_long)", "cell_too_long")
            if any(kept):
                rows.append((number, kept))
    except csv.Error as exc:
        raise SheetError(f"CSV 格式错误：{exc} (bad_csv)", "bad_file") from exc
    return Sheet(rows)


def _bad(message: str = "不是有效的 XLSX 文件", code: str = "bad_xlsx") -> SheetError:
    """A refusal; a file that is not a readable sheet keeps the code ``bad_file``."""
    return SheetError(f"{message} ({code})", "bad_file" if code == "bad_xlsx" else code)


def _local(name: str) -> str:
    return name.rpartition(":")[2]


def _no_doctype(*_: object) -> None:
    raise _bad("XLSX 文件不能含 DOCTYPE")


class _Parts:
    """The zip's parts, read as bounded streams: sizes and ratios checked from the central
    directory before a byte is inflated, and the running total while inflating."""

    def __init__(self, body: bytes) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(body))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise _bad() from exc
        if len(infos) > MAX_ZIP_MEMBERS:
            raise _bad(f"XLSX 文件的部件超过 {MAX_ZIP_MEMBERS} 个", "xlsx_too_large")
        self.infos = {i.filename: i for i in infos}
        self.read = 0

    def parse(self, name: str, start: Callable[[str, dict[str, str]], None],
              end: Callable[[str], None] | None = None,
              text: Callable[[str], None] | None = None) -> bool:
        """Feed part ``name`` to an expat parser with these handlers; ``False`` if absent."""
        info = self.infos.get(name)
        if info is None:
            return False
        if info.file_size > MAX_PART_BYTES or self.read + info.file_size > MAX_XLSX_BYTES:
            raise _bad(f"XLSX 文件解压后超过 {MAX_XLSX_BYTES // 1024 // 1024} MiB",
                       "xlsx_too_large")
        if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(
                info.compress_size, 1):
            raise _bad(f"XLSX 文件的压缩比超过 {MAX_RATIO}:1", "xlsx_ratio")
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.StartDoctypeDeclHandler = _no_doctype
        parser.StartElementHandler = lambda tag, attrs: start(_local(tag), attrs)
        if end is not None:
            parser.EndElementHandler = lambda tag: end(_local(tag))
        if text is not None:
            parser.CharacterDataHandler = text
        try:
            with self.zip.open(info) as stream:
                while chunk := stream.read(64 * 1024):
                    self.read += len(chunk)
                    if self.read > MAX_XLSX_BYTES:  # a part larger than it said
                        raise _bad("XLSX 文件解压后过大", "xlsx_too_large")
                    parser.Parse(chunk, False)
                parser.Parse(b"", True)
        except SheetError:  # a bound, from a handler (a ValueError too)
            raise
        except expat.ExpatError as exc:
            raise _bad() from exc
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
                ValueError) as exc:
            raise _bad() from exc
        return True


class _Text:
    """Character data of the elements being collected, bounded by ``MAX_CELL_TEXT``."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.on = False

    def add(self, data: str) -> None:
        if not self.on:
            return
        self.size += len(data)
        if self.size > MAX_CELL_TEXT:
            raise _bad(f"有单元格超过 {MAX_CELL_TEXT} 字", "cell_too_long")
        self.parts.append(data)

    def take(self) -> str:
        out = "".join(self.parts)
        self.parts, self.size = [], 0
        return out


def _first_sheet(parts: _Parts) -> tuple[str, str | None]:
    """The first worksheet's part and the shared strings' part, by the workbook's relations."""
    first: list[str] = []
    targets: dict[str, str] = {}
    shared: list[str] = []

    def on_sheet(tag: str, attrs: dict[str, str]) -> None:
        if tag == "sheet" and not first:
            first.extend(v for k, v in attrs.items() if k.endswith(":id"))

    def on_rel(tag: str, attrs: dict[str, str]) -> None:
        if tag == "Relationship":
            target = attrs.get("Target", "")
            target = target[1:] if target.startswith("/") else f"xl/{target}"
            targets[attrs.get("Id", "")] = target
            if attrs.get("Type", "").endswith("/sharedStrings"):
                shared.append(target)

    if not parts.parse("xl/workbook.xml", on_sheet):
        raise _bad()
    parts.parse("xl/_rels/workbook.xml.rels", on_rel)
    if not first and not targets:
        raise _bad("XLSX 文件没有工作表")
    sheet = targets.get(first[0], "") if first else ""
    if not sheet:
        sheet = "xl/worksheets/sheet1.xml"
    strings = shared[0] if shared else ("xl/sharedStrings.xml"
                                        if "xl/sharedStrings.xml" in parts.infos else None)
    return sheet, strings


def _shared_strings(parts: _Parts, name: str | None) -> list[str]:
    strings: list[str] = []
    text = _Text()
    skip = 0  # inside phonetic runs (rPh): not part of the cell's text

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal skip
        if tag == "rPh":
            skip += 1
        elif tag == "t" and not skip:
            text.on = True

    def end(tag: str) -> None:
        nonlocal skip
        if tag == "rPh":
            skip -= 1
        elif tag == "t":
            text.on = False
        elif tag == "si":
            if len(strings) >= MAX_CELLS:
                raise _bad(f"文件超过 {MAX_CELLS} 个单元格", "too_many_cells")
            strings.append(text.take())

    if name is not None:
        parts.parse(name, start, end, text.add)
    return strings


def _column(ref: str) -> int:
    """``"AB12"`` → 27 (0-based); -1 without letters."""
    index = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            index = index * 26 + ord(ch) - 64
            if index > 1 << 20:
                break
        else:
            break
    return index - 1


def _value(kind: str, raw: str, strings: list[str]) -> str:
    if kind == "s":
        try:
            return strings[int(raw)].strip()
        except (ValueError, IndexError) as exc:
            raise _bad() from exc
    if kind == "b":
        return "是" if raw.strip() == "1" else "否"
    if kind in ("", "n"):
        try:
            number = float(raw)
        except ValueError:
            return raw.strip()
        # 编号 typed as a number is "5", not "5.0"
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else raw.strip()
    return raw.strip()  # inlineStr, str (a formula's text), e, d


def read_xlsx(body: bytes) -> Sheet:
    """The first worksheet, read as a stream; formulas read as their saved values."""
    parts = _Parts(body)
    sheet_part, strings_part = _first_sheet(parts)
    strings = _shared_strings(parts, strings_part)
    rows: list[tuple[int, list[str]]] = []
    text = _Text()
    state: dict[str, Any] = {"row": 0, "cells": [], "col": -1, "kind": "", "keep": False,
                             "count": 0, "skip": 0}

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "c":
            state["count"] += 1
            if state["count"] > MAX_CELLS:
                raise _bad(f"文件超过 {MAX_CELLS} 个单元格", "too_many_cells")
            col = _column(attrs.get("r", ""))
            state["col"] = col if col >= 0 else state["col"] + 1
            state["kind"] = attrs.get("t", "")
            state["keep"] = state["col"] <= MAX_COLUMNS
        elif tag == "row":
            number = attrs.get("r", "")
            state["row"] = int(number) if number.isdigit() else state["row"] + 1
            if state["row"] > MAX_ROWS + 20:
                raise _bad(f"文件超过 {MAX_ROWS} 行", "too_many_rows")
            state["cells"], state["col"] = [], -1
        elif tag == "rPh":
            state["skip"] += 1
        elif tag in ("v", "t") and state["keep"] and not state["skip"]:
            text.on = True

    def end(tag: str) -> None:
        if tag in ("v", "t"):
            text.on = False
        elif tag == "rPh":
            state["skip"] -= 1
        elif tag == "c":
            raw = text.take()
            if state["keep"] and raw:
                cells: list[str] = state["cells"]
                cells.extend("" for _ in range(state["col"] + 1 - len(cells)))
                cells[state["col"]] = _value(state["kind"], raw, strings)
        elif tag == "row":
            cells = state["cells"]
            if any(cells):
                rows.append((state["row"], cells))

    if not parts.parse(sheet_part, start, end, text.add):
        raise _bad("XLSX 文件没有工作表")
    return Sheet(rows)


def media_kind(content_type: str) -> tuple[str, str | None]:
    """``("csv" | "xlsx" | "", charset)`` of a request's ``Content-Type``."""
    main, _, params = content_type.partition(";")
    main = main.strip().lower()
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    if main == XLSX_TYPE:
        return "xlsx", None
    if main in CSV_TYPES:
        return "csv", charset
    return "", None


def read(body: bytes, kind: str, charset: str | None = None) -> Sheet:
    if len(body) > MAX_FILE_BYTES:
        raise SheetError(f"文件超过 {MAX_FILE_BYTES // 1024 // 1024} MiB (file_too_large)",
                         "file_too_large")
    if kind == "xlsx" or (not kind and body.startswith(b"PK\x03\x04")):
        return read_xlsx(body)
    return read_csv(body, charset)
