"""The diff summary as a plain-text table (stdout) and as Markdown (for a changelog)."""

from __future__ import annotations

from typing import Any

_KIND_NAMES = {"risk_group": "risk group", "features": "risk features",
               "missing": "missing facts", "added": "items added",
               "removed": "items removed", "changed": "items changed"}


def _who(info: dict[str, Any]) -> str:
    if not info:
        return "?"
    text = f"{info['name']} {info['version']} ({info['digest'][:19]}…)"
    if info.get("overrides"):
        unsafe = {o["name"] for o in info.get("parameter_overrides", ()) if o.get("unsafe")}
        text += " with " + ", ".join(f"{k}={v:g}" + (" (UNSAFE override)" if k in unsafe else "")
                                     for k, v in info["overrides"].items())
    return text


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def summary_table(data: dict[str, Any]) -> str:
    """``DiffSummary.to_dict()`` as the plain-text table ``all-rules diff`` prints."""
    changed = data["changed"]["patients"]
    width = 40
    lines = [f"from {_who(data['from'])}", f"to   {_who(data['to'])}", "",
             f"{'patients':<{width}} {data['patients']:>10,}",
             f"{'assessed':<{width}} {data['assessed']:>10,}",
             f"{'invalid rows':<{width}} {data['invalid_rows']:>10,}",
             f"{'engine errors':<{width}} {data['engine_errors']:>10,}",
             f"{'changed':<{width}} {changed:>10,}  {_share(changed, data['assessed'])}",
             "", "change"]
    lines += [f"  {_KIND_NAMES[k]:<{width - 2}} {v['patients']:>10,}"
              for k, v in data["changes"].items()]
    if data["risk_groups"]:
        lines += ["", "risk group"]
        lines += [f"  {t['before'] + ' -> ' + t['after']:<{width - 2}} {t['patients']:>10,}"
                  for t in data["risk_groups"]]
    if data["rules"]:
        lines += ["", f"{'rule':<{width}} {'patients':>10} {'added':>8} {'removed':>8} "
                      f"{'changed':>8}"]
        lines += [f"  {rule_id:<{width - 2}} {r['patients']:>10,} {r['added']:>8,} "
                  f"{r['removed']:>8,} {r['changed']:>8,}"
                  for rule_id, r in data["rules"].items()]
    return "\n".join(lines) + "\n"


def _examples(examples: list[str]) -> str:
    return ", ".join(f"`{e}`" for e in examples)


def summary_markdown(data: dict[str, Any]) -> str:
    """``DiffSummary.to_dict()`` as a Markdown section (for a changelog entry)."""
    changed = data["changed"]["patients"]
    out = [f"Compared {data['patients']:,} patients: from {_who(data['from'])} to "
           f"{_who(data['to'])}.", "",
           f"- changed: {changed:,} of {data['assessed']:,} assessed "
           f"({_share(changed, data['assessed'])})",
           f"- invalid rows: {data['invalid_rows']:,}; engine errors: "
           f"{data['engine_errors']:,}", "",
           "| change | patients | examples |", "|---|---:|---|"]
    out += [f"| {_KIND_NAMES[k]} | {v['patients']:,} | {_examples(v['examples'])} |"
            for k, v in data["changes"].items()]
    if data["risk_groups"]:
        out += ["", "| risk group before → after | patients | examples |", "|---|---:|---|"]
        out += [f"| {t['before']} → {t['after']} | {t['patients']:,} | "
                f"{_examples(t['examples'])} |" for t in data["risk_groups"]]
    if data["rules"]:
        out += ["", "| rule | patients | added | removed | changed (fields) | examples |",
                "|---|---:|---:|---:|---|---|"]
        for rule_id, r in data["rules"].items():
            fields = ", ".join(f"{f} {n:,}" for f, n in r["fields"].items())
            changed_text = f"{r['changed']:,}" + (f" ({fields})" if fields else "")
            out.append(f"| `{rule_id}` | {r['patients']:,} | {r['added']:,} | "
                       f"{r['removed']:,} | {changed_text} | {_examples(r['examples'])} |")
    return "\n".join(out) + "\n"
