"""Two charts drawn on the server as inline SVG (no script, no external library): throughput over the day and
voucher states by bank. Only presentation attributes are used (no `style`), so the page's Content Security Policy
can forbid inline styles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.dashboard.html import STATE_COLOUR, STATE_ORDER, STATE_ZH, Html, h, join


def _nice_max(value: int) -> int:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def throughput(submitted: Sequence[int], paid: Sequence[int], hour_now: int) -> Html:
    """Vouchers submitted and paid in each hour of today (local time), as grouped bars."""
    width, height, left, bottom, top = 1200, 200, 40, 24, 18
    plot_h = height - bottom - top
    top_value = _nice_max(max([*submitted, *paid, 0]))
    slot = (width - left - 10) / 24
    bar = max(2.0, slot / 2 - 2)
    parts: list[Html] = []
    for frac in (0, 0.5, 1) if top_value > 1 else (0, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            h(
                '<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#dde3ea" stroke-width="1"/>'
                '<text x="{}" y="{}" font-size="10" text-anchor="end" fill="#667">{}</text>',
                left,
                width - 10,
                left - 4,
                round(y + 3, 1),
                int(top_value * frac),
                y=round(y, 1),
            )
        )
    for hour in range(24):
        x = left + hour * slot
        for n, (values, colour, name) in enumerate(((submitted, "#4a78b5", "提交"), (paid, "#2e8b57", "支付"))):
            value = values[hour] if hour < len(values) else 0
            bh = plot_h * value / top_value
            parts.append(
                h(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}:00 {} {}</title></rect>',
                    round(x + 1 + n * (bar + 1), 1),
                    round(top + plot_h - bh, 1),
                    round(bar, 1),
                    round(bh, 1),
                    colour,
                    f"{hour:02d}",
                    name,
                    value,
                )
            )
        if hour % 3 == 0:
            parts.append(
                h(
                    '<text x="{}" y="{}" font-size="10" fill="{}">{}</text>',
                    round(x + 1, 1),
                    height - 8,
                    "#223" if hour <= hour_now else "#99a",
                    f"{hour:02d}时",
                )
            )
    legend = h(
        '<g font-size="11"><rect x="{}" y="2" width="10" height="10" fill="#4a78b5"/>'
        '<text x="{}" y="11">提交 submitted</text>'
        '<rect x="{}" y="2" width="10" height="10" fill="#2e8b57"/><text x="{}" y="11">支付 paid</text></g>',
        width - 250,
        width - 236,
        width - 130,
        width - 116,
    )
    return h(
        '<svg class="chart" viewBox="0 0 {w} {hh}" width="100%" role="img" aria-label="今日吞吐量 throughput today">'
        "{parts}{legend}</svg>",
        w=width,
        hh=height,
        legend=legend,
        parts=join(parts),
    )


def states_by_bank(counts: Mapping[str, Mapping[str, int]], banks: Sequence[str]) -> Html:
    """One horizontal bar per bank, split by voucher state, with a legend."""
    width, row_h, left = 1200, 26, 70
    rows = list(banks) or ["—"]
    height = row_h * len(rows) + 34
    parts: list[Html] = []
    biggest = max([sum(counts.get(b, {}).values()) for b in rows] + [1])
    for i, bank in enumerate(rows):
        y = 4 + i * row_h
        parts.append(h('<text x="0" y="{}" font-size="12" fill="#223">{}</text>', y + 15, bank))
        x = float(left)
        total = sum(counts.get(bank, {}).values())
        for state in STATE_ORDER:
            n = counts.get(bank, {}).get(state, 0)
            if not n:
                continue
            w = (width - left - 60) * n / biggest
            parts.append(
                h(
                    '<rect x="{}" y="{}" width="{}" height="18" fill="{}"><title>{} {} {}: {}</title></rect>',
                    round(x, 1),
                    y,
                    round(max(w, 1), 1),
                    STATE_COLOUR[state],
                    bank,
                    STATE_ZH[state],
                    state,
                    n,
                )
            )
            x += w
        parts.append(h('<text x="{}" y="{}" font-size="11" fill="#445">{}</text>', round(x + 4, 1), y + 14, total))
    lx = 0
    ly = height - 10
    for state in STATE_ORDER:
        parts.append(
            h(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="10">{}</text>',
                lx,
                ly - 9,
                STATE_COLOUR[state],
                lx + 13,
                ly,
                STATE_ZH[state],
            )
        )
        lx += 90
    return h(
        '<svg class="chart" viewBox="0 0 {} {}" width="100%" role="img" aria-label="各银行凭证状态 states by bank">'
        "{}</svg>",
        width,
        height,
        join(parts),
    )
