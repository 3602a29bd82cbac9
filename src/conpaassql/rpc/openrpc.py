"""``rpc.discover``: an OpenRPC description of a registry, from the declarations that
validate the calls (so the description cannot drift from what is accepted)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from conpaassql.rpc.registry import CallContext, Method, Registry
from conpaassql.rpc.types import Params

OPENRPC_VERSION = "1.2.6"
DISCOVER = "rpc.discover"


def _version() -> str:
    try:
        return metadata.version("conpaassql")
    except metadata.PackageNotFoundError:
        return "0"


def _method(method: Method, schemas: dict[str, Any]) -> dict[str, Any]:
    schema = method.params.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    params = [{"name": name, "required": name in required, "schema": spec}
              for name, spec in (schema.get("properties") or {}).items()]
    params += [{"name": name, "required": True,
                "schema": {"type": "string", "contentMediaType": "application/octet-stream"},
                "description": "a file part of the multipart form (the form's last part)"}
               for name in method.files]
    summary = (method.doc or "").strip().splitlines()[0] if method.doc.strip() else ""
    return {
        "name": method.name,
        "summary": summary,
        "paramStructure": "by-name",
        "params": params,
        "result": {"name": "result", "schema": {}},
        "x-verb": method.verb,
        "x-access": method.access,
        "x-unexpected-params": "refused" if schema.get("additionalProperties") is False
        else "ignored",
    }


def describe(registry: Registry, title: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    methods = [_method(method, schemas) for method in registry]
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": _version(),
                 "description": "The ConPaaS JSON-RPC dialect: GET methods take "
                                "?method=NAME&params=JSON, POST methods a JSON body "
                                "{method, params, id}, UPLOAD methods a multipart form."},
        "methods": methods,
        "components": {"schemas": schemas},
    }


def add_discovery(registry: Registry, title: str, access: str = "user") -> None:
    """Register ``rpc.discover`` (describing every method, itself included)."""

    async def discover(params: Params, ctx: CallContext) -> dict[str, Any]:
        """This API's OpenRPC description."""
        return describe(registry, title)

    registry.add(DISCOVER, "GET", discover, access=access)  # type: ignore[arg-type]
