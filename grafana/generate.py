"""Write the dashboards to grafana/dashboards/<name>.json, or check (`--check`) that
the committed files agree with the source.

    python -m grafana.generate [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.boards import BOARDS

OUT = Path(__file__).resolve().parent / "dashboards"


def render() -> dict[str, str]:
    """Each dashboard's JSON text, keyed by file name."""
    out = {}
    for name, make in BOARDS.items():
        doc = json.loads(json.dumps(make().build(), cls=JSONEncoder))
        out[f"{name}.json"] = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = ap.parse_args(argv)
    rendered = render()
    stale = sorted(
        {p.name for p in OUT.glob("*.json")} - set(rendered)
        | {n for n, text in rendered.items() if not (OUT / n).exists() or (OUT / n).read_text() != text}
    )
    if args.check:
        for n in stale:
            print(f"grafana/dashboards/{n} is out of date: run python -m grafana.generate", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for p in OUT.glob("*.json"):
        if p.name not in rendered:
            p.unlink()
    for n, text in rendered.items():
        (OUT / n).write_text(text)
    print(f"wrote {len(rendered)} dashboards to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
