"""Write the vendored spec: OpenAI's Responses document cut to what its operations reach.

    python tests/fuzz/trim_spec.py [SOURCE]   (default ../shared/spec/openai-responses-openapi.json)

The tests read ``openai-responses-openapi.min.json`` next to this file, so they run on a
fresh clone. It is the source document with every component schema no path reaches
dropped, and prose (``description``, ``example``, ``title``, ``x-oaiMeta``) removed:
nothing that constrains a request, a response or an event is changed. Examples go too,
since schemathesis would send them as requests (they name OpenAI's models).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "spec" / "openai-responses-openapi.json"
TARGET = HERE / "openai-responses-openapi.min.json"
PROSE = frozenset({"description", "example", "examples", "title", "x-oaiMeta"})
REF_PREFIX = "#/components/"


def strip(value: Any) -> Any:
    """``value`` without prose keywords; names under ``properties`` are kept as they are."""
    if isinstance(value, list):
        return [strip(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "properties" and isinstance(item, dict):
            out[key] = {name: strip(sub) for name, sub in item.items()}
        elif key not in PROSE:
            out[key] = strip(item)
    return out


def reachable(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Component names (per section) reachable from the paths."""
    found: dict[str, set[str]] = {}
    components = spec["components"]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                section, name = ref[len(REF_PREFIX):].split("/", 1)
                if name not in found.setdefault(section, set()):
                    found[section].add(name)
                    walk(components[section][name])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(spec["paths"])
    return found


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    keep = reachable(spec)
    components = {
        section: {name: spec["components"][section][name] for name in sorted(names)}
        for section, names in sorted(keep.items())
    }
    components["securitySchemes"] = spec["components"].get("securitySchemes", {})
    trimmed: dict[str, Any] = {key: spec[key] for key in ("openapi", "info", "servers",
                                                          "security") if key in spec}
    trimmed["paths"] = spec["paths"]
    trimmed["components"] = components
    return strip(trimmed)  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    spec = json.loads(source.read_text(encoding="utf-8"))
    TARGET.write_text(json.dumps(trim(spec), indent=None, sort_keys=False) + "\n",
                      encoding="utf-8")
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes) from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
