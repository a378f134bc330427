"""The API reference of /dashboard/docs, rendered from the app's own OpenAPI document, so the
page cannot drift from what /openapi.json (built from the marshmallow schemas) describes."""
from markupsafe import Markup, escape

from . import openapi

METHODS = ("get", "post", "put", "patch", "delete")


def load_spec():
    """The OpenAPI document /openapi.json serves, built in-process."""
    return openapi.spec_dict()


def inline_code(text):
    """Escape a description and turn its `backticks` into <code> (the spec's only markup)."""
    parts = str(escape(text or "")).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


def _resolve(spec, schema, depth=0):
    """Follow a local $ref (#/components/schemas/Name); returns (name or None, schema)."""
    name = None
    while isinstance(schema, dict) and "$ref" in schema and depth < 10:
        ref = schema["$ref"]
        name = ref.rsplit("/", 1)[-1]
        node = spec
        for part in ref.lstrip("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema, depth = node, depth + 1
    return name, schema if isinstance(schema, dict) else {}


def type_of(spec, schema):
    """A short human type: string, integer, Card, array of Payment, upi | card …"""
    name, schema = _resolve(spec, schema)
    if name and schema.get("type", "object") == "object" and "enum" not in schema:
        return name
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            return " | ".join(type_of(spec, s) for s in schema[key])
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " | ".join(k for k in kind if k != "null") or "null"
    if kind == "array":
        return f"array of {type_of(spec, schema.get('items', {}))}"
    if schema.get("format") in ("date-time", "uuid", "uri"):
        return f"{kind} ({schema['format']})"
    return kind


def fields_of(spec, schema):
    """The top-level properties of a JSON body: [{name, type, required, description}]."""
    _, schema = _resolve(spec, schema)
    if "allOf" in schema:
        merged = {"properties": {}, "required": []}
        for part in schema["allOf"]:
            _, part = _resolve(spec, part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        schema = merged
    required = set(schema.get("required", []))
    return [{"name": name, "type": type_of(spec, prop), "required": name in required,
             "description": _resolve(spec, prop)[1].get("description", "")}
            for name, prop in schema.get("properties", {}).items()]


def _json_schema(spec, holder):
    _, holder = _resolve(spec, holder)
    content = holder.get("content", {})
    media = content.get("application/json") or next(iter(content.values()), {})
    return media.get("schema")


def reference(spec):
    """Operations grouped by tag (in the document's order): what the template renders."""
    global_security = spec.get("security") or []
    groups = {}
    for path, item in spec["paths"].items():
        if not isinstance(item, dict):
            continue
        shared_params = item.get("parameters", [])
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params = []
            for p in shared_params + op.get("parameters", []):
                _, p = _resolve(spec, p)
                params.append({"name": p.get("name", ""), "in": p.get("in", ""), "required": bool(p.get("required")),
                               "type": type_of(spec, p.get("schema", {})), "description": p.get("description", "")})
            body = _json_schema(spec, op["requestBody"]) if "requestBody" in op else None
            responses = []
            for code, resp in op.get("responses", {}).items():
                _, resp = _resolve(spec, resp)
                schema = _json_schema(spec, resp)
                responses.append({"code": str(code), "description": resp.get("description", ""),
                                  "type": type_of(spec, schema) if schema else "",
                                  "fields": fields_of(spec, schema) if schema and str(code).startswith("2") else []})
            security = op.get("security", global_security)
            tag = (op.get("tags") or ["Other"])[0]
            groups.setdefault(tag, []).append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "description": op.get("description", ""), "auth": bool(security),
                "params": params, "body": fields_of(spec, body) if body else [], "responses": responses,
                "anchor": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "").strip("-"),
            })
    return [{"tag": tag, "operations": ops} for tag, ops in groups.items()]
