"""Reading the recommenders' spreadsheets: CSV (UTF-8 with or without BOM, GB18030) and XLSX.

A sheet comes back as rows of text cells, each with the row number the spreadsheet shows, so
an error can point at the cell an organiser sees.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass

from openpyxl import load_workbook

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
MAX_ROWS = 5000
MAX_COLUMNS = 64


class SheetError(ValueError):
    """The file cannot be read as a spreadsheet at all."""


@dataclass(frozen=True)
class Sheet:
    rows: list[tuple[int, list[str]]]
    """``(row number as the spreadsheet shows it, cells)``; empty rows left out."""


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 编号 typed as a number comes back as 5.0
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def decode_csv(body: bytes, charset: str | None = None) -> str:
    """The declared charset if any; else UTF-8 (a BOM is dropped), else GB18030 — what Excel
    on Chinese Windows writes when it saves "CSV"."""
    if charset and charset.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        try:
            return body.decode(charset).removeprefix("\ufeff")
        except (LookupError, UnicodeDecodeError) as exc:
            raise SheetError(f"文件不是 {charset} 编码 (bad_encoding)") from exc
    if body.startswith(b"\xef\xbb\xbf"):
        try:
            return body[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SheetError("文件不是有效的 UTF-8 编码 (bad_encoding)") from exc
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return body.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise SheetError(
            "无法识别文件编码，请另存为 UTF-8 或 GB18030 的 CSV (bad_encoding)") from exc


def read_csv(body: bytes, charset: str | None = None) -> Sheet:
    text = decode_csv(body, charset)
    rows: list[tuple[int, list[str]]] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        # a record is one spreadsheet row, even when a cell holds line breaks
        for number, cells in enumerate(reader, start=1):
            if number > MAX_ROWS + 20:
                raise SheetError(f"文件超过 {MAX_ROWS} 行 (too_many_rows)")
            if any(c.strip() for c in cells):
                rows.append((number, [c.strip() for c in cells[:MAX_COLUMNS + 1]]))
    except csv.Error as exc:
        raise SheetError(f"CSV 格式错误：{exc} (bad_csv)") from exc
    return Sheet(rows)


def read_xlsx(body: bytes) -> Sheet:
    """The first worksheet; formulas read as their saved values."""
    try:
        book = load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise SheetError("不是有效的 XLSX 文件 (bad_xlsx)") from exc
    try:
        ws = book.worksheets[0] if book.worksheets else None
        if ws is None:
            raise SheetError("XLSX 文件没有工作表 (bad_xlsx)")
        rows: list[tuple[int, list[str]]] = []
        for number, values in enumerate(
            ws.iter_rows(max_col=MAX_COLUMNS + 1, values_only=True), start=1
        ):
            if number > MAX_ROWS + 20:
                raise SheetError(f"文件超过 {MAX_ROWS} 行 (too_many_rows)")
            cells = [_text(v) for v in values]
            if any(cells):
                rows.append((number, cells))
    finally:
        book.close()
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
    if kind == "xlsx" or (not kind and body.startswith(b"PK\x03\x04")):
        return read_xlsx(body)
    return read_csv(body, charset)
