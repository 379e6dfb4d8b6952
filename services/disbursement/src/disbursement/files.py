"""Batch files for providers paid through their portal (delivery mode `file`): a CSV, and an
ISO 20022 pain.001.001.09 customer credit transfer initiation built with pyiso20022's
generated bindings (xsdata), one payment information block per batch and one credit transfer
per payment, its end-to-end id the payment number.

CSV columns (README, "Batch files"): payment_number, amount (major units, e.g. 2500.00),
currency, mechanism, recipient_name, identifier_scheme, identifier_value, phone,
account_kind, account_value, bank_code, pay_point_code, pay_by.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pyiso20022.pain import pain_001_001_09 as pain
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDate, XmlDateTime

from disbursement.domain import major_amount
from disbursement.models import Batch, Payment

PAIN_001_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
CSV_COLUMNS = (
    "payment_number",
    "amount",
    "currency",
    "mechanism",
    "recipient_name",
    "identifier_scheme",
    "identifier_value",
    "phone",
    "account_kind",
    "account_value",
    "bank_code",
    "pay_point_code",
    "pay_by",
)
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Debtor:
    name: str
    account: str


def recipient_name(payment: Payment) -> str:
    return f"{payment.recipient_given_name} {payment.recipient_family_name}".strip()


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def batch_csv(
    payments: Sequence[Payment], pay_point_codes: dict[str, str], delimiter: str = ","
) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for p in payments:
        identifier = p.recipient_identifier or {}
        account = p.account or {}
        writer.writerow(
            _cell(value)
            for value in (
                p.number,
                major_amount(p.amount_minor, p.currency),
                p.currency,
                p.mechanism,
                recipient_name(p),
                identifier.get("scheme"),
                identifier.get("value"),
                p.recipient_phone,
                account.get("kind"),
                account.get("value"),
                account.get("bank_code"),
                pay_point_codes.get(str(p.pay_point_id)) if p.pay_point_id else None,
                p.pay_by.isoformat(),
            )
        )
    return out.getvalue()


def _max_text(value: str, length: int) -> str:
    return value[:length]


def _credit_transfer(payment: Payment) -> pain.CreditTransferTransaction34:
    account = payment.account or {}
    amount = Decimal(major_amount(payment.amount_minor, payment.currency))
    creditor_account = None
    if account.get("value"):
        account_id = (
            pain.AccountIdentification4Choice(iban=account["value"])
            if account.get("kind") == "iban"
            else pain.AccountIdentification4Choice(
                othr=pain.GenericAccountIdentification1(
                    id=_max_text(account["value"], 34),
                    schme_nm=pain.AccountSchemeName1Choice(prtry=account.get("kind", "other")),
                )
            )
        )
        creditor_account = pain.CashAccount38(id=account_id)
    agent = None
    if account.get("bank_code"):
        agent = pain.BranchAndFinancialInstitutionIdentification6(
            fin_instn_id=pain.FinancialInstitutionIdentification18(
                othr=pain.GenericFinancialIdentification1(id=_max_text(account["bank_code"], 35))
            )
        )
    return pain.CreditTransferTransaction34(
        pmt_id=pain.PaymentIdentification6(instr_id=payment.number, end_to_end_id=payment.number),
        amt=pain.AmountType4Choice(
            instd_amt=pain.ActiveOrHistoricCurrencyAndAmount(value=amount, ccy=payment.currency)
        ),
        cdtr_agt=agent,
        cdtr=pain.PartyIdentification135(nm=_max_text(recipient_name(payment), 140)),
        cdtr_acct=creditor_account,
        rmt_inf=pain.RemittanceInformation16(ustrd=[f"Amana {payment.number}"]),
    )


def batch_pain001(
    batch: Batch, payments: Sequence[Payment], debtor: Debtor, created_at: datetime
) -> str:
    """pain.001.001.09 for one batch: valid against the ISO 20022 schema (tested)."""
    control_sum = Decimal(major_amount(batch.total_amount_minor, batch.currency))
    count = str(len(payments))
    initiation = pain.CustomerCreditTransferInitiationV09(
        grp_hdr=pain.GroupHeader85(
            msg_id=batch.id.hex[:35],
            cre_dt_tm=XmlDateTime.from_datetime(created_at.replace(microsecond=0)),
            nb_of_txs=count,
            ctrl_sum=control_sum,
            initg_pty=pain.PartyIdentification135(nm=_max_text(debtor.name, 140)),
        ),
        pmt_inf=[
            pain.PaymentInstruction30(
                pmt_inf_id=f"{batch.id.hex[:28]}-{batch.sequence}"[:35],
                pmt_mtd=pain.PaymentMethod3Code.TRF,
                btch_bookg=False,
                nb_of_txs=count,
                ctrl_sum=control_sum,
                reqd_exctn_dt=pain.DateAndDateTime2Choice(dt=XmlDate.from_date(created_at.date())),
                dbtr=pain.PartyIdentification135(nm=_max_text(debtor.name, 140)),
                dbtr_acct=pain.CashAccount38(
                    id=pain.AccountIdentification4Choice(
                        othr=pain.GenericAccountIdentification1(id=debtor.account)
                    ),
                    ccy=batch.currency,
                ),
                dbtr_agt=pain.BranchAndFinancialInstitutionIdentification6(
                    fin_instn_id=pain.FinancialInstitutionIdentification18(
                        othr=pain.GenericFinancialIdentification1(id="NOTPROVIDED")
                    )
                ),
                chrg_br=pain.ChargeBearerType1Code.SLEV,
                cdt_trf_tx_inf=[_credit_transfer(p) for p in payments],
            )
        ],
    )
    serializer = XmlSerializer(config=SerializerConfig(xml_declaration=True, encoding="UTF-8"))
    return serializer.render(
        pain.Document(cstmr_cdt_trf_initn=initiation), ns_map={None: PAIN_001_NAMESPACE}
    )
