"""`margin report --format xlsx`: the report as a workbook (the `xlsx` extra, like the planner's).

Sheet "Report": one row per group and the total, every field of the CSV, money as numbers in USD
(the exact decimal strings stay in CSV and JSON), a filter on the header and the group column
frozen. Sheet "About": the window and the dimension.
"""

from __future__ import annotations

import io
from decimal import Decimal

from xlsxwriter import Workbook

from margin.ledger.report import SpendReport, flat_records

_MONEY_SUFFIX = "_usd"
_SHARE_SUFFIXES = ("_share", "_rate")


def render_xlsx(report: SpendReport) -> bytes:
    records = flat_records(report)
    buffer = io.BytesIO()
    book = Workbook(buffer, {"in_memory": True})
    bold = book.add_format({"bold": True})
    money = book.add_format({"num_format": "$#,##0.000000"})
    share = book.add_format({"num_format": "0.0%"})
    sheet = book.add_worksheet("Report")
    fields = list(records[0])
    for col, name in enumerate(fields):
        sheet.write_string(0, col, name, bold)
        sheet.set_column(col, col, max(12, min(32, len(name) + 2)))
    for row, record in enumerate(records, start=1):
        last = row == len(records)
        for col, name in enumerate(fields):
            value = record[name]
            style = money if name.endswith(_MONEY_SUFFIX) else share if name.endswith(_SHARE_SUFFIXES) else None
            if value is None:
                continue
            if isinstance(value, str) and name.endswith(_MONEY_SUFFIX):
                sheet.write_number(row, col, float(Decimal(value)), style)
            elif isinstance(value, int | float):
                sheet.write_number(row, col, value, style)
            else:
                sheet.write_string(row, col, str(value), bold if last else None)
    sheet.freeze_panes(1, 2)
    sheet.autofilter(0, 0, len(records) - 1, len(fields) - 1)  # the total row stays out of the filter
    about = book.add_worksheet("About")
    facts = (("group_by", report.group_by), ("since", report.since.isoformat()), ("until", report.until.isoformat()))
    for row, (name, value) in enumerate(facts):
        about.write_string(row, 0, name, bold)
        about.write_string(row, 1, value)
    about.set_column(0, 1, 28)
    book.close()
    return buffer.getvalue()
