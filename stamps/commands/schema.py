"""`stamps schema`: the JSON Schema of the `stamps:` config, for editors and CI checks."""

from __future__ import annotations

import argparse
import json

from stamps.config.loader import SECRET_KEYS
from stamps.config.model import StampsConfig


def schema() -> dict[str, object]:
    doc = StampsConfig.model_json_schema(by_alias=True)
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "stamps stack config (keys under `stamps:` in Pulumi.<stack>.yaml)"
    props = doc.setdefault("properties", {})
    for key in SECRET_KEYS:
        props[key] = {"description": "secret: set with `pulumi config set --secret`", "type": "object",
                      "properties": {"secure": {"type": "string"}}, "required": ["secure"]}
    return doc


def run(args: argparse.Namespace) -> int:
    print(json.dumps(schema(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schema", help="print the JSON Schema of the stack config")
    p.set_defaults(func=run)
