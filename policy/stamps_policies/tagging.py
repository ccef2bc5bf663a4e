"""Required tags on every taggable resource; CELL resources also name their CELL and region.

Which types take tags is read from the installed pulumi-azure-native SDK: a type is taggable when its args
class (`<Type>Args`, or `<Type>InitArgs` where a same-named type exists) has a `tags` parameter typed as a
mapping, read from the generated source (or the imported class when the file is not where codegen puts
it). API Management named values, for one, have a `tags` list of labels, not ARM tags. A hand-kept list
would drift from the SDK with every upgrade; the signature cannot.
"""

from __future__ import annotations

import ast
import collections.abc
import functools
import importlib
import importlib.util
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy

from ._common import CELL_COMPONENT, known, resource_policy, type_chain

SCHEMA = PolicyConfigSchema(
    properties={
        "requiredTags": {
            "type": "array", "items": {"type": "string"}, "minItems": 1,
            "default": ["environment", "layer", "cost-center"],
            "description": "tag keys every taggable resource carries",
        },
        "cellTags": {
            "type": "array", "items": {"type": "string"},
            "default": ["cell", "region"],
            "description": "extra tag keys on CELL resources (layer=cell or inside a stamps:cell:Cell)",
        },
    },
)


def _split(type_token: str) -> tuple[str, str] | None:
    parts = type_token.split(":")
    if len(parts) != 3 or parts[0] != "azure-native":
        return None
    return parts[1], parts[2]


def args_class(type_token: str) -> type | None:
    """The pulumi-azure-native args class of a resource type token, or None if the SDK has none."""
    split = _split(type_token)
    if split is None:
        return None
    module, name = split
    try:
        mod = importlib.import_module("pulumi_azure_native." + module.replace("/", "."))
    except ImportError:
        return None
    # `InitArgs` first: codegen only uses it when `<Type>Args` is taken by an input type of that name.
    found = getattr(mod, f"{name}InitArgs", None) or getattr(mod, f"{name}Args", None)
    return found if isinstance(found, type) else None


def _is_mapping(annotation: Any) -> bool:
    if isinstance(annotation, str):  # a signature read from source
        return "Mapping[" in annotation or "Dict[" in annotation
    if typing.get_origin(annotation) in (collections.abc.Mapping, dict):
        return True
    return any(_is_mapping(a) for a in typing.get_args(annotation))


def snake_case(name: str) -> str:
    """Pulumi's Python file name for a resource: `PublicIPAddress` -> `public_ip_address`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _signature_from_source(type_token: str) -> bool | None:
    """The args class's `tags` parameter, read from the resource's source file without importing it.

    Importing a resource module loads its whole service's input types (over a second for `network`); the
    signature in the generated source is what `inspect.signature` would report, at a millisecond's cost.
    None when the file or class is not where Pulumi's codegen puts it.
    """
    split = _split(type_token)
    spec = importlib.util.find_spec("pulumi_azure_native")
    if split is None or spec is None or not spec.submodule_search_locations:
        return None
    module, name = split
    path = Path(spec.submodule_search_locations[0], *module.split("/"), f"{snake_case(name)}.py")
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    cls = classes.get(f"{name}InitArgs") or classes.get(f"{name}Args")
    init = next((f for f in (cls.body if cls else []) if isinstance(f, ast.FunctionDef) and f.name == "__init__"),
                None)
    if init is None:
        return None
    for arg in init.args.args + init.args.kwonlyargs:
        if arg.arg == "tags":
            return arg.annotation is not None and _is_mapping(ast.unparse(arg.annotation))
    return False


def _signature_from_import(type_token: str) -> bool | None:
    cls = args_class(type_token)
    if cls is None:
        return None
    param = inspect.signature(cls).parameters.get("tags")
    return param is not None and _is_mapping(param.annotation)


@functools.cache
def takes_tags(type_token: str) -> bool | None:
    """True/False for azure-native types the SDK knows; None when it cannot tell (other providers, components)."""
    found = _signature_from_source(type_token)
    return found if found is not None else _signature_from_import(type_token)


def _check(args: ResourceValidationArgs, cfg: dict[str, Any]) -> Iterator[str]:
    if not takes_tags(args.resource_type):
        return
    tags = args.props.get("tags") or {}
    # A value unknown during preview counts as present: only its key can be checked yet.
    values = {str(k): known(lambda k=k: tags[k]) for k in tags}  # type: ignore[misc]  # the default binds the loop value; known() calls the lambda at once
    required = list(cfg["requiredTags"])
    in_cell = values.get("layer") == "cell" or CELL_COMPONENT in type_chain(args.urn)[:-1]
    if in_cell:
        required += [k for k in cfg["cellTags"] if k not in required]
    missing = [k for k in required if k not in values]
    if missing:
        where = " on a CELL resource" if in_cell and set(missing) & set(cfg["cellTags"]) else ""
        yield f"missing tags{where}: {', '.join(missing)}"
    empty = [k for k in required if isinstance(values.get(k), str) and not values[k].strip()]
    if empty:
        yield f"empty tags: {', '.join(empty)}"


def policies() -> list[ResourceValidationPolicy]:
    return [
        resource_policy(
            "required-tags",
            "Taggable resources carry the environment, layer and cost-center tags; CELL resources also "
            "their cell and region.",
            None, _check, schema=SCHEMA),
    ]
