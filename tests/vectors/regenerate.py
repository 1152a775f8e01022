"""Rewrites the golden vectors of the standard dialect from protocols.samples (`make vectors`).

Run it only when a change to the standard is intended; the golden tests exist to notice every other change.
"""

from __future__ import annotations

from pathlib import Path

from protocols import codec, samples

HERE = Path(__file__).parent


def main() -> None:
    out = HERE / "standard"
    out.mkdir(exist_ok=True)
    for seq, (name, payload, sender) in enumerate(samples.all_payloads(), 1):
        (out / f"{name}.xml").write_bytes(codec.encode(samples.message(payload, sender, seq)))
        print(f"wrote {out / name}.xml")


if __name__ == "__main__":
    main()
