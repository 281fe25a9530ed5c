"""The suite's JSON Schema, with every registered component's parameters,
so an editor can complete and check suites as they are typed."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from benchbed.plugin_api.registry import Registry, get_registry
from benchbed.suite.protocol import Suite


def _component_schemas(registry: Registry) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Per kind, one schema per component: ``name`` const plus its params."""
    entries = list(registry.all())
    # Many plugins call their model "Params": map each class to its own $ref.
    refs, top = models_json_schema([(r.cls.Params, "validation") for r in entries],
                                   ref_template="#/$defs/{model}")
    defs = top.get("$defs", {})
    by_kind: dict[str, list[dict]] = {}
    for reg in entries:
        ref = refs[(reg.cls.Params, "validation")]["$ref"]
        params = dict(defs.get(ref.rsplit("/", 1)[-1], {"type": "object", "properties": {}}))
        properties = {"name": {"const": reg.name, "description": reg.cls.summary()},
                      **params.get("properties", {})}
        schema = {"type": "object", "title": f"{reg.kind} {reg.name}", "properties": properties,
                  "required": ["name", *params.get("required", [])], "additionalProperties": False}
        by_kind.setdefault(reg.kind, []).append(schema)
    return by_kind, defs


def _slot(kind: str, by_kind: dict[str, list[dict]], nullable: bool) -> dict[str, Any]:
    options = [{"type": "string", "enum": sorted(s["properties"]["name"]["const"]
                                                  for s in by_kind.get(kind, []))},
               *by_kind.get(kind, [])]
    if nullable:
        options.append({"type": "null"})
    return {"anyOf": options}


def _rewrite(node: Any, by_kind: dict[str, list[dict]]) -> Any:
    if isinstance(node, dict):
        if "x-benchbed-kind" in node:
            kind = node["x-benchbed-kind"]
            nullable = "anyOf" in node and any(o.get("type") == "null" for o in node["anyOf"])
            out = _slot(kind, by_kind, nullable)
            out["description"] = node.get("description", "")
            return out
        if "x-benchbed-kind-values" in node:
            kind = node["x-benchbed-kind-values"]
            return {"type": "object", "description": node.get("description", ""),
                    "additionalProperties": _slot(kind, by_kind, False)}
        return {k: _rewrite(v, by_kind) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, by_kind) for v in node]
    return node


def suite_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or get_registry()
    by_kind, component_defs = _component_schemas(registry)
    schema = _rewrite(Suite.model_json_schema(), by_kind)
    schema.setdefault("$defs", {})
    for name, definition in component_defs.items():
        schema["$defs"].setdefault(name, definition)
    schema["$defs"].pop("ComponentRef", None)
    # The loader's own keys.
    schema["properties"]["extends"] = {"type": "string", "description": "a base suite file to merge under this one"}
    schema["properties"]["profiles"] = {"type": "object", "description": "named overrides, chosen with --profile",
                                        "additionalProperties": {"type": "object"}}
    schema["properties"]["default_profile"] = {"type": "string"}
    # A suite that extends another has its base's required fields.
    schema["if"], schema["else"] = {"required": ["extends"]}, {"required": schema.pop("required", [])}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
