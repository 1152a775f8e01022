"""Reference data for the simulators: banks, agencies, purposes, name parts, merchants (all invented).

Everything here is plain, immutable data plus a few pure helpers (Luhn check digits, derived account
numbers). Names read like Nanning's: agencies are the city's bureaus (南宁市教育局 …) with six-digit codes,
expense codes follow the government functional (`ExpFuncCode`, 2050201 …) and economic (`ExpEcoCode`,
30211 …) classifications. Account numbers, card numbers and CNAPS codes are made up: they have the right
shape (length, prefix, Luhn digit on cards) and nothing else, so no real account is ever named.

Two agencies and the treasury single account match :mod:`protocols.samples` (101001 南宁市教育局, 102003
南宁市卫生健康委员会, 4501000000000001), so the samples and the simulated traffic look alike.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

# --- banks ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bank:
    """A bank as the simulators know it.

    Attributes:
        code: the bank code, also its node code on the wire (`ICBC`).
        name: the bank's name; every branch name starts with it, which is how a simulated bank tells its own
            payees from other banks' (`中国工商银行`).
        cnaps_class: the three-digit bank class that starts its CNAPS codes (`102`).
        acct_prefix: corporate account numbers of this bank start with these digits.
        acct_len: the length of a corporate account number.
        card_bin: the six-digit BIN of its official cards (公务卡).
        debit_bin: the six-digit BIN of its personal debit cards.
        branches: sub-branch names in Nanning (`民族支行`); index 0 is the city branch (`南宁分行`).
        agent: whether the finance bureau uses it as an agent bank (代理银行); other banks only hold payees.
    """

    code: str
    name: str
    cnaps_class: str
    acct_prefix: str
    acct_len: int
    card_bin: str
    debit_bin: str
    branches: tuple[str, ...]
    agent: bool = True

    def branch_name(self, index: int = 0) -> str:
        """The full name of a Nanning branch (`中国工商银行南宁民族支行`); index 0 is the city branch."""
        return f"{self.name}南宁{self.branches[index % len(self.branches)]}"

    def cnaps_no(self, index: int = 0) -> str:
        """A 12-digit CNAPS code for the branch `index`: bank class, Nanning's area code, branch, check digit."""
        body = f"{self.cnaps_class}6110{(index % len(self.branches)) + 1:04d}"
        return body + str(sum(int(c) for c in body) % 10)


_BRANCHES: Final = ("分行", "民族支行", "青秀支行", "琅东支行", "朝阳支行", "江南支行", "五一支行")

#: Every bank the simulators know, by code. The first five are agent banks.
BANKS: Final[dict[str, Bank]] = {
    b.code: b
    for b in (
        Bank("ICBC", "中国工商银行", "102", "2102", 19, "628288", "622202", _BRANCHES),
        Bank("CCB", "中国建设银行", "105", "4505", 20, "628266", "621700", _BRANCHES),
        Bank("BOCOM", "交通银行", "301", "4510", 21, "628216", "622262", _BRANCHES),
        Bank("ABC", "中国农业银行", "103", "2001", 19, "628268", "622848", _BRANCHES),
        Bank("BOC", "中国银行", "104", "6210", 18, "628313", "621785", _BRANCHES),
        Bank("BBGB", "广西北部湾银行", "313", "8001", 18, "628392", "623166", _BRANCHES[:4], agent=False),
        Bank("GLB", "桂林银行", "313", "6601", 18, "628395", "621456", _BRANCHES[:3], agent=False),
        Bank("PSBC", "中国邮政储蓄银行", "403", "9450", 19, "628321", "621799", _BRANCHES[:5], agent=False),
    )
}

#: The agent banks, in a stable order.
AGENT_BANK_CODES: Final = tuple(code for code, bank in BANKS.items() if bank.agent)

_CODE_RE: Final = re.compile(r"[A-Za-z0-9]{1,20}")


def bank_profile(code: str) -> Bank:
    """The bank with this code; an unknown (test) code gets a made-up but stable profile.

    A bank code the simulators do not know (a test's `BANK1`) still needs account numbers and a name, so one
    is derived from the code with CRC-32 (not :func:`hash`, which is salted per process).

    Raises:
        ValueError: the code is not 1–20 letters and digits (a node code, PROTOCOL.md §3).
    """
    known = BANKS.get(code)
    if known is not None:
        return known
    if not _CODE_RE.fullmatch(code):
        raise ValueError(f"a bank code is 1–20 letters and digits, not {code!r}")
    digits = f"{zlib.crc32(code.encode('ascii')):010d}"
    return Bank(
        code,
        f"{code}银行",
        "9" + digits[:2],
        "7" + digits[2:5],
        19,
        "6289" + digits[5:7],
        "6239" + digits[7:9],
        _BRANCHES[:3],
    )


# --- the treasury and the agencies ----------------------------------------------------------------------------

#: The treasury single account (国库单一账户) that pays direct vouchers (5201), held at the PBOC.
TREASURY_ACCT_NO: Final = "4501000000000001"
TREASURY_ACCT_NAME: Final = "南宁市财政局国库单一账户"
TREASURY_BANK_NAME: Final = "中国人民银行南宁中心支行"

#: Fund type 1: general public budget (一般公共预算资金).
FUND_TYPE_CODE: Final = "1"


@dataclass(frozen=True, slots=True)
class Agency:
    """A budget unit (预算单位).

    Attributes:
        code: six-digit agency code.
        name: its name (`南宁市教育局`).
        exp_func_codes: its functional classification codes; the first is its main one, used for quota.
        purposes: names of :data:`PURPOSES` particular to it, in addition to :data:`COMMON_PURPOSES`.
    """

    code: str
    name: str
    exp_func_codes: tuple[str, ...]
    purposes: tuple[str, ...]


AGENCIES: Final[tuple[Agency, ...]] = (
    Agency("101001", "南宁市教育局", ("2050201", "2050202", "2050203", "2050101"), ("校舍维修工程款", "教学设备采购")),
    Agency("102003", "南宁市卫生健康委员会", ("2100201", "2100101", "2100401"), ("医用耗材采购", "医疗设备采购")),
    Agency("103001", "南宁市公安局", ("2040201", "2040220"), ("警用装备采购", "执法车辆维修费")),
    Agency("104001", "南宁市财政局", ("2010601", "2010650"), ("信息系统运维服务费",)),
    Agency("105002", "南宁市交通运输局", ("2140101", "2140104", "2140106"), ("道路养护工程款",)),
    Agency("106001", "南宁市住房和城乡建设局", ("2120101", "2120399"), ("市政设施维护费",)),
    Agency("107001", "南宁市民政局", ("2080201", "2081002"), ("养老服务补贴",)),
    Agency("108001", "南宁市人力资源和社会保障局", ("2080101", "2080109"), ("就业培训补贴",)),
    Agency("109001", "南宁市生态环境局", ("2110101", "2110301"), ("环境监测服务费",)),
    Agency("110002", "南宁市农业农村局", ("2130101", "2130108"), ("农业技术推广服务费",)),
    Agency("111001", "南宁市文化广电和旅游局", ("2070101", "2070109"), ("文化活动场地租赁费",)),
    Agency("112001", "南宁市自然资源局", ("2200101", "2200106"), ("测绘服务费",)),
    Agency("113001", "南宁市水利局", ("2130301", "2130305"), ("堤防维修工程款",)),
    Agency("114001", "南宁市市场监督管理局", ("2013801", "2013812"), ("检验检测服务费",)),
    Agency("115003", "南宁市城市管理综合执法局", ("2120101", "2120501"), ("环卫作业服务费",)),
)

AGENCY_BY_CODE: Final[dict[str, Agency]] = {a.code: a for a in AGENCIES}


def zero_balance_account(agency_code: str, bank_code: str) -> str:
    """The agency's zero-balance account (零余额账户) at a bank: derived, so it never changes.

    The fifth digit is `0`; payee accounts drawn by the feeder have `5` there, so the two never collide.
    """
    bank = bank_profile(bank_code)
    head = f"{bank.acct_prefix}0{agency_code}"
    return head + "0" * (bank.acct_len - len(head) - 3) + "001"


def zero_balance_account_name(agency_name: str) -> str:
    """`南宁市教育局零余额账户`."""
    return f"{agency_name}零余额账户"


# --- purposes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Purpose:
    """What a payment is for, and what that implies about it.

    Attributes:
        name: `PaySummaryName` (`校舍维修工程款`).
        exp_eco_code: the economic classification (`ExpEcoCode`).
        payee_kind: a key of :data:`INDUSTRIES`, or `"person"` for an individual.
        median_yuan: the median amount, in whole yuan (amounts are log-normal around it).
        sigma: the spread of the log-normal (natural log units).
        vt_codes: the voucher types it is paid by: 5201 for projects and large procurement, 8202 for the
            running costs an agency pays against its own quota.
        round_prob: how often the amount is a round figure (a contract sum rather than an invoice).
    """

    name: str
    exp_eco_code: str
    payee_kind: str
    median_yuan: int
    sigma: float
    vt_codes: tuple[str, ...]
    round_prob: float = 0.1


_DIRECT: Final = ("5201",)
_AUTHORIZED: Final = ("8202",)
_BOTH: Final = ("5201", "8202")

PURPOSES: Final[dict[str, Purpose]] = {
    p.name: p
    for p in (
        # common running costs
        Purpose("办公设备采购", "31002", "tech", 20_000, 1.0, _BOTH, 0.3),
        Purpose("差旅费", "30211", "person", 2_500, 0.8, _AUTHORIZED),
        Purpose("办公用品采购", "30201", "retail", 3_000, 0.9, _AUTHORIZED),
        Purpose("电费", "30206", "power", 15_000, 0.8, _AUTHORIZED, 0.0),
        Purpose("水费", "30205", "water", 4_000, 0.8, _AUTHORIZED, 0.0),
        Purpose("物业管理费", "30209", "property", 30_000, 0.7, _BOTH, 0.5),
        Purpose("会议费", "30215", "hotel", 15_000, 0.8, _AUTHORIZED),
        Purpose("培训费", "30216", "hotel", 20_000, 0.9, _AUTHORIZED, 0.2),
        Purpose("劳务费", "30226", "person", 3_000, 0.8, _AUTHORIZED, 0.4),
        Purpose("印刷费", "30202", "printing", 5_000, 0.9, _AUTHORIZED),
        Purpose("公务用车运行维护费", "30231", "auto", 2_000, 0.8, _AUTHORIZED),
        # particular to one agency
        Purpose("校舍维修工程款", "30213", "construction", 300_000, 1.1, _DIRECT, 0.4),
        Purpose("教学设备采购", "31003", "tech", 150_000, 1.0, _DIRECT, 0.3),
        Purpose("医用耗材采购", "30218", "medical", 40_000, 1.0, _BOTH),
        Purpose("医疗设备采购", "31003", "medical", 600_000, 1.1, _DIRECT, 0.3),
        Purpose("警用装备采购", "31003", "tech", 200_000, 1.0, _DIRECT, 0.3),
        Purpose("执法车辆维修费", "30231", "auto", 6_000, 0.8, _AUTHORIZED),
        Purpose("信息系统运维服务费", "30227", "tech", 150_000, 0.9, _DIRECT, 0.5),
        Purpose("道路养护工程款", "30213", "construction", 800_000, 1.2, _DIRECT, 0.4),
        Purpose("市政设施维护费", "30213", "construction", 250_000, 1.1, _DIRECT, 0.4),
        Purpose("养老服务补贴", "30305", "service", 80_000, 1.0, _BOTH, 0.3),
        Purpose("就业培训补贴", "30305", "service", 50_000, 1.0, _BOTH, 0.3),
        Purpose("环境监测服务费", "30227", "service", 60_000, 0.9, _BOTH, 0.3),
        Purpose("农业技术推广服务费", "30227", "service", 40_000, 0.9, _BOTH, 0.3),
        Purpose("文化活动场地租赁费", "30214", "hotel", 30_000, 0.8, _BOTH, 0.4),
        Purpose("测绘服务费", "30227", "service", 90_000, 1.0, _BOTH, 0.3),
        Purpose("堤防维修工程款", "30213", "construction", 1_000_000, 1.2, _DIRECT, 0.4),
        Purpose("检验检测服务费", "30227", "service", 25_000, 0.9, _BOTH, 0.3),
        Purpose("环卫作业服务费", "30227", "service", 400_000, 0.9, _DIRECT, 0.4),
    )
}

#: Purposes every agency pays.
COMMON_PURPOSES: Final = (
    "办公设备采购",
    "差旅费",
    "办公用品采购",
    "电费",
    "水费",
    "物业管理费",
    "会议费",
    "培训费",
    "劳务费",
    "印刷费",
    "公务用车运行维护费",
)

# --- payees ---------------------------------------------------------------------------------------------------

#: Company name parts by industry: the legal-form suffixes a company of that kind carries.
INDUSTRIES: Final[dict[str, tuple[str, ...]]] = {
    "construction": ("建设工程有限公司", "建筑工程有限公司", "市政工程有限公司", "路桥工程有限公司"),
    "tech": ("科技有限公司", "信息技术有限公司", "电子设备有限公司", "智能科技有限公司"),
    "retail": ("商贸有限公司", "办公用品有限公司", "贸易有限责任公司"),
    "property": ("物业服务有限公司", "物业管理有限公司"),
    "hotel": ("酒店管理有限公司", "会展服务有限公司", "大酒店有限公司"),
    "printing": ("印务有限公司", "印刷有限公司", "文化传播有限公司"),
    "auto": ("汽车服务有限公司", "汽车维修有限公司"),
    "medical": ("医疗器械有限公司", "医药有限公司", "医疗科技有限公司"),
    "service": ("技术服务有限公司", "咨询服务有限公司", "环境服务有限公司", "检测技术有限公司"),
    "power": ("供电服务有限公司",),
    "water": ("供水有限公司",),
}

COMPANY_REGIONS: Final = ("广西", "南宁", "广西南宁", "南宁市")
COMPANY_TRADE_NAMES: Final = (
    "桂建", "邕城", "宏达", "恒信", "华南", "八桂", "绿城", "青秀", "盛世", "新宇", "鑫源", "博大", "中盛",
    "联创", "金桥", "瑞丰", "安泰", "华通", "永盛", "天成", "壮锦", "凤岭", "相思湖", "五象", "邕江", "明秀",
)  # fmt: skip

#: Surnames common in Guangxi (韦, 覃, 莫, 蒙 among them) and given-name characters.
SURNAMES: Final = (
    "黄", "李", "韦", "陈", "梁", "覃", "刘", "莫", "蒙", "王", "张", "林", "杨", "周", "吴", "陆", "罗",
    "赵", "潘", "卢", "蓝", "唐", "农", "廖",
)  # fmt: skip
GIVEN_NAME_CHARS: Final = (
    "明", "华", "丽", "伟", "芳", "军", "敏", "静", "强", "磊", "洋", "艳", "勇", "杰", "娟", "涛", "超",
    "霞", "平", "刚", "桂", "兰", "海", "燕", "志", "红", "建", "文", "宁", "思", "雨", "晨",
)  # fmt: skip

# --- official-card merchants ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MerchantKind:
    """A kind of merchant where official cards are used, with its typical spending.

    Attributes:
        names: merchant names of this kind.
        median_yuan: the median amount, in whole yuan.
        sigma: the spread of the log-normal (natural log units).
        hours: the hours of the day (inclusive range) when such spending happens.
    """

    names: tuple[str, ...]
    median_yuan: int
    sigma: float
    hours: tuple[int, int]


MERCHANTS: Final[tuple[MerchantKind, ...]] = (
    MerchantKind(("南宁邕江宾馆", "南宁相思湖酒店", "北京某某商务酒店", "广州某某大酒店"), 500, 0.5, (12, 23)),
    MerchantKind(("广西某某航空服务有限公司", "某某航空股份有限公司"), 1_200, 0.5, (6, 22)),
    MerchantKind(("中国铁路南宁局集团有限公司南宁东站",), 300, 0.6, (6, 21)),
    MerchantKind(("南宁某某餐饮管理有限公司", "南宁老友记餐饮店"), 400, 0.6, (11, 21)),
    MerchantKind(("中国石化销售股份有限公司广西南宁石油分公司", "中国石油南宁某某加油站"), 300, 0.4, (7, 20)),
    MerchantKind(("南宁某某办公用品商行", "广西某某文具有限公司"), 250, 0.8, (9, 18)),
    MerchantKind(("南宁某某图文印刷店",), 150, 0.7, (9, 18)),
)

# --- helpers --------------------------------------------------------------------------------------------------


def luhn_digit(body: str) -> str:
    """The Luhn check digit to append to `body` (card numbers carry one as their last digit)."""
    total = 0
    for n, c in enumerate(reversed(body)):
        d = int(c)
        if n % 2 == 0:  # every second digit from the right of the full number, i.e. from the body's last
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    """Whether a card number's last digit is its Luhn check digit."""
    return len(number) >= 2 and number.isdigit() and luhn_digit(number[:-1]) == number[-1]
