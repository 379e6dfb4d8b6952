"""Statement files a provider or finance uploads, read into the same results a webhook carries.

CSV (UTF-8, comma-separated, this header exactly; README, "Statements"):

    payment_number,status,amount_minor,currency,provider_reference,occurred_at,reason_code,fee_minor

`status` is settled, failed or reversed; `occurred_at` ISO 8601 with a time zone;
`reason_code` for failed and reversed; `fee_minor` may be empty (0).

ISO 20022 camt.053.001.08 (bank-to-customer statement), read with pyiso20022's bindings: each
booked entry's transaction details give the payment number (`EndToEndId`), the amount and
currency, the provider reference (`AcctSvcrRef`) and the booking date; a return reason
(`RtrInf/Rsn/Cd`) makes it a failure, `RvslInd` a reversal, otherwise it is a settlement.
Entries that are not booked (pending, information) are counted and not applied.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from pydantic import ValidationError
from pyiso20022.camt import camt_053_001_08 as camt
from xsdata.exceptions import ParserError
from xsdata.formats.dataclass.parsers import XmlParser

from amana_common.errors import Problem
from amana_contracts.psp import PaymentResult
from disbursement.domain import minor_unit_digits

MAX_STATEMENT_LINES = 100_000
CSV_HEADER = [
    "payment_number",
    "status",
    "amount_minor",
    "currency",
    "provider_reference",
    "occurred_at",
    "reason_code",
    "fee_minor",
]


@dataclass(frozen=True)
class ParsedStatement:
    results: list[PaymentResult]
    not_booked: int = 0


def _refuse(detail: str, field: str = "body") -> Problem:
    return Problem(
        422, "invalid-statement", detail, errors=[{"field": field, "in": "body", "message": detail}]
    )


def _has_control_characters(text: str) -> bool:
    return any((ord(c) < 32 and c not in "\r\n\t") or 127 <= ord(c) < 160 for c in text)


def parse_csv(body: bytes) -> ParsedStatement:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _refuse("the statement is not UTF-8") from error
    if _has_control_characters(text):
        raise _refuse("the statement holds control characters")
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header != CSV_HEADER:
        raise _refuse(f"the header must be exactly: {','.join(CSV_HEADER)}", "header")
    results: list[PaymentResult] = []
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(results) >= MAX_STATEMENT_LINES:
            raise Problem(413, "statement-too-large", f"over {MAX_STATEMENT_LINES} lines")
        results.append(_csv_result(number, row))
    return ParsedStatement(results)


def _csv_result(line: int, row: list[str]) -> PaymentResult:
    if len(row) != len(CSV_HEADER):
        raise _refuse(f"line {line} has {len(row)} columns, not {len(CSV_HEADER)}", f"line {line}")
    values: dict[str, Any] = dict(zip(CSV_HEADER, row, strict=True))
    values["reason_code"] = values["reason_code"] or None
    values["fee_minor"] = values["fee_minor"] or 0
    try:
        return PaymentResult.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        column = ".".join(str(p) for p in first["loc"])
        raise _refuse(f"line {line}, {column}: {first['msg']}", f"line {line}.{column}") from error


# --- camt.053 ---------------------------------------------------------------------------------


def parse_camt053(body: bytes) -> ParsedStatement:
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        raise _refuse("document type declarations and entities are not accepted")
    try:
        document = XmlParser().from_bytes(body, camt.Document)
    except (ParserError, ValueError, TypeError, SyntaxError) as error:
        raise _refuse(f"not a camt.053.001.08 document: {str(error)[:200]}") from error
    results: list[PaymentResult] = []
    not_booked = 0
    for statement in document.bk_to_cstmr_stmt.stmt:
        for entry in statement.ntry:
            if entry.sts.cd != "BOOK":
                not_booked += 1
                continue
            for index, details in enumerate(_transactions(entry)):
                if len(results) >= MAX_STATEMENT_LINES:
                    raise Problem(413, "statement-too-large", f"over {MAX_STATEMENT_LINES} entries")
                results.append(_camt_result(entry, details, index))
    return ParsedStatement(results, not_booked)


def _transactions(entry: camt.ReportEntry10) -> list[camt.EntryTransaction10]:
    return [tx for details in entry.ntry_dtls for tx in details.tx_dtls]


def _camt_result(
    entry: camt.ReportEntry10, tx: camt.EntryTransaction10, index: int
) -> PaymentResult:
    refs = tx.refs or camt.TransactionReferences6()
    amount = tx.amt or entry.amt
    number = refs.end_to_end_id or ""
    reason = tx.rtr_inf.rsn.cd if tx.rtr_inf and tx.rtr_inf.rsn else None
    status = "failed" if reason else "reversed" if entry.rvsl_ind else "settled"
    reference = refs.acct_svcr_ref or entry.acct_svcr_ref or entry.ntry_ref or number
    try:
        return PaymentResult(
            payment_number=number,
            status=status,
            amount_minor=_minor_units(amount),
            currency=amount.ccy,
            provider_reference=reference,
            occurred_at=_booked_at(entry),
            reason_code=reason,
        )
    except (ValidationError, ValueError) as error:
        raise _refuse(f"entry {entry.ntry_ref or index}: {str(error)[:200]}") from error


def _minor_units(amount: camt.ActiveOrHistoricCurrencyAndAmount) -> int:
    scaled = amount.value.scaleb(minor_unit_digits(amount.ccy))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount.value} {amount.ccy} has more decimals than the currency")
    return int(scaled)


def _booked_at(entry: camt.ReportEntry10) -> datetime:
    booked = entry.bookg_dt
    if booked is not None and booked.dt_tm is not None:
        moment: datetime = booked.dt_tm.to_datetime()
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if booked is not None and booked.dt is not None:
        return datetime.combine(booked.dt.to_date(), time(), tzinfo=UTC)
    raise ValueError("a booked entry needs a booking date")
