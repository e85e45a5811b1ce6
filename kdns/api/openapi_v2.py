"""`/openapi/v2`: the Swagger 2.0 form of the `/openapi/v3` documents, in JSON or protobuf.

kubectl validates a `kind: List` on the client (cli-runtime's query-param verifier never
trusts the server with a List), and that validation reads `/openapi/v2` only, in protobuf
(`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`: the `Document` message
of github.com/google/gnostic's openapiv2 package). Without it, `kubectl apply -f list.yaml`
stops before sending anything.

The document is made from the v3 ones (kdns/api/openapi.py), so the two never disagree: one
definition per v3 component schema, one path per v3 path. One difference on purpose: an
object that keeps unknown fields (`x-kubernetes-preserve-unknown-fields`, the `OPEN` parts of
kdns/registry/schema.py) is published without its properties, as kube-apiserver publishes
such CRD schemas in v2. kubectl's v2 validator has no notion of preserved fields: listing some
properties would make it refuse the ones kdns does not spell out (a container's `command`),
while an object without properties accepts any.

The protobuf is made with the `protobuf` library from a descriptor of the part of gnostic's
messages this document uses (`_MESSAGES`; field numbers are gnostic's wire contract). A
`oneof` is declared as its plain fields: only one of them is ever set, which is the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
)
from google.protobuf.message import Message

from kdns.api import openapi
from kdns.api.resources import GROUP_VERSIONS

# What client-go asks for, and what the answer is labelled: an `@` is no token character, so
# Go's mime parser (client-go reads the Content-Type with it) refuses the first spelling.
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
PROTOBUF_MEDIA_TYPES = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF)

_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"


def _schema(node: dict[str, Any]) -> dict[str, Any]:
    """A v3 schema as v2: references renamed, preserved-unknown objects without properties."""
    if "$ref" in node:
        return {"$ref": _V2_REF + node["$ref"].removeprefix(_V3_REF)}
    out = dict(node)
    if out.get(_PRESERVE):
        out.pop("properties", None)
        out.pop("required", None)
    if "properties" in out:
        out["properties"] = {k: _schema(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = _schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _schema(out["additionalProperties"])
    return out


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    """A v3 path or query parameter (`schema: {type}`) as v2 (`type` beside `in`)."""
    out = {k: v for k, v in param.items() if k != "schema"}
    out["type"] = param["schema"]["type"]
    return out


def _operation(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op["operationId"],
        "produces": ["application/json", "application/yaml"],
        "parameters": [_parameter(p) for p in op["parameters"]],
        "responses": {},
    }
    body = op.get("requestBody")
    if body is not None:
        out["consumes"] = list(body["content"])
        schema = next(iter(body["content"].values()))["schema"]
        out["parameters"].insert(0, {"name": "body", "in": "body", "required": True, "schema": _schema(schema)})
    for code, response in op["responses"].items():
        v2: dict[str, Any] = {"description": response["description"]}
        if "content" in response:
            v2["schema"] = _schema(response["content"]["application/json"]["schema"])
        out["responses"][code] = v2
    out["x-kubernetes-action"] = op["x-kubernetes-action"]
    out["x-kubernetes-group-version-kind"] = op["x-kubernetes-group-version-kind"]
    return out


def document() -> dict[str, Any]:
    """Every group-version's paths and schemas in one Swagger 2.0 document, as kube-apiserver's."""
    definitions: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for gv in GROUP_VERSIONS:
        v3 = openapi.document(gv)
        info = v3["info"]
        for name, schema in v3["components"]["schemas"].items():
            definitions.setdefault(name, _schema(schema))
        for path, item in v3["paths"].items():
            v2_item: dict[str, Any] = {}
            for key, value in item.items():
                if key == "parameters":
                    if value:
                        v2_item["parameters"] = [_parameter(p) for p in value]
                else:
                    v2_item[key] = _operation(value)
            paths[path] = v2_item
    return {
        "swagger": "2.0",
        "info": info,
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }


# --- protobuf -------------------------------------------------------------------------------

# gnostic's openapi.v2 messages, as far as this document needs them:
# message -> [(field, number, type)], type a message name, "string" or "bool"; "*" = repeated.
_MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "Document": [
        ("swagger", 1, "string"), ("info", 2, "Info"), ("paths", 8, "Paths"),
        ("definitions", 9, "Definitions"), ("security", 12, "*SecurityRequirement"),
        ("security_definitions", 13, "SecurityDefinitions"),
    ],
    "Info": [("title", 1, "string"), ("version", 2, "string")],
    "Paths": [("path", 2, "*NamedPathItem")],
    "NamedPathItem": [("name", 1, "string"), ("value", 2, "PathItem")],
    "PathItem": [
        ("get", 2, "Operation"), ("put", 3, "Operation"), ("post", 4, "Operation"),
        ("delete", 5, "Operation"), ("patch", 8, "Operation"), ("parameters", 9, "*ParametersItem"),
    ],
    "Operation": [
        ("operation_id", 5, "string"), ("produces", 6, "*string"), ("consumes", 7, "*string"),
        ("parameters", 8, "*ParametersItem"), ("responses", 9, "Responses"),
        ("vendor_extension", 13, "*NamedAny"),
    ],
    "ParametersItem": [("parameter", 1, "Parameter")],
    "Parameter": [("body_parameter", 1, "BodyParameter"), ("non_body_parameter", 2, "NonBodyParameter")],
    "BodyParameter": [
        ("description", 1, "string"), ("name", 2, "string"), ("in", 3, "string"),
        ("required", 4, "bool"), ("schema", 5, "Schema"),
    ],
    "NonBodyParameter": [
        ("query_parameter_sub_schema", 3, "QueryParameterSubSchema"),
        ("path_parameter_sub_schema", 4, "PathParameterSubSchema"),
    ],
    "QueryParameterSubSchema": [
        ("required", 1, "bool"), ("in", 2, "string"), ("description", 3, "string"),
        ("name", 4, "string"), ("type", 6, "string"),
    ],
    "PathParameterSubSchema": [
        ("required", 1, "bool"), ("in", 2, "string"), ("description", 3, "string"),
        ("name", 4, "string"), ("type", 5, "string"),
    ],
    "Responses": [("response_code", 1, "*NamedResponseValue")],
    "NamedResponseValue": [("name", 1, "string"), ("value", 2, "ResponseValue")],
    "ResponseValue": [("response", 1, "Response")],
    "Response": [("description", 1, "string"), ("schema", 2, "SchemaItem")],
    "SchemaItem": [("schema", 1, "Schema")],
    "Definitions": [("additional_properties", 1, "*NamedSchema")],
    "NamedSchema": [("name", 1, "string"), ("value", 2, "Schema")],
    "Schema": [
        ("_ref", 1, "string"), ("format", 2, "string"), ("description", 4, "string"),
        ("required", 19, "*string"), ("additional_properties", 21, "AdditionalPropertiesItem"),
        ("type", 22, "TypeItem"), ("items", 23, "ItemsItem"), ("properties", 25, "Properties"),
        ("vendor_extension", 31, "*NamedAny"),
    ],
    "AdditionalPropertiesItem": [("schema", 1, "Schema")],
    "TypeItem": [("value", 1, "*string")],
    "ItemsItem": [("schema", 1, "*Schema")],
    "Properties": [("additional_properties", 1, "*NamedSchema")],
    "NamedAny": [("name", 1, "string"), ("value", 2, "Any")],
    "Any": [("yaml", 2, "string")],
    "SecurityRequirement": [("additional_properties", 1, "*NamedStringArray")],
    "NamedStringArray": [("name", 1, "string"), ("value", 2, "StringArray")],
    "StringArray": [("value", 1, "*string")],
    "SecurityDefinitions": [("additional_properties", 1, "*NamedSecurityDefinitionsItem")],
    "NamedSecurityDefinitionsItem": [("name", 1, "string"), ("value", 2, "SecurityDefinitionsItem")],
    "SecurityDefinitionsItem": [("api_key_security", 2, "ApiKeySecurity")],
    "ApiKeySecurity": [("type", 1, "string"), ("name", 2, "string"), ("in", 3, "string")],
}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL}


@cache
def _document_class() -> type[Message]:
    file = descriptor_pb2.FileDescriptorProto(name="kdns/openapi_v2.proto", package="openapi.v2", syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field_name, number, spelled in fields:
            kind = spelled.removeprefix("*")
            field = message.field.add(
                name=field_name,
                number=number,
                label=_F.LABEL_REPEATED if spelled.startswith("*") else _F.LABEL_OPTIONAL,
            )
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".openapi.v2.{kind}"
    # A pool of its own: the default one may hold gnostic's full messages under these names.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("openapi.v2.Document"))


def _named(pairs: dict[str, Any], convert: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": k, "value": convert(v)} for k, v in pairs.items()]


def _extensions(node: dict[str, Any]) -> list[dict[str, Any]]:
    # gnostic keeps an extension's value as YAML text; JSON is YAML.
    return [
        {"name": k, "value": {"yaml": json.dumps(v, separators=(",", ":"))}}
        for k, v in node.items()
        if k.startswith("x-")
    ]


def _pb_schema(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "$ref" in node:
        out["_ref"] = node["$ref"]
    if "type" in node:
        out["type"] = {"value": [node["type"]]}
    for key in ("format", "description"):
        if key in node:
            out[key] = node[key]
    if "required" in node:
        out["required"] = node["required"]
    if "properties" in node:
        out["properties"] = {"additional_properties": _named(node["properties"], _pb_schema)}
    if "items" in node:
        out["items"] = {"schema": [_pb_schema(node["items"])]}
    if isinstance(node.get("additionalProperties"), dict):
        out["additional_properties"] = {"schema": _pb_schema(node["additionalProperties"])}
    extensions = _extensions(node)
    if extensions:
        out["vendor_extension"] = extensions
    return out


def _pb_parameter(param: dict[str, Any]) -> dict[str, Any]:
    if param["in"] == "body":
        body = {k: v for k, v in param.items() if k != "schema"}
        return {"parameter": {"body_parameter": {**body, "schema": _pb_schema(param["schema"])}}}
    fields = {k: param[k] for k in ("name", "in", "type", "required", "description") if k in param}
    which = "path_parameter_sub_schema" if param["in"] == "path" else "query_parameter_sub_schema"
    return {"parameter": {"non_body_parameter": {which: fields}}}


def _pb_operation(op: dict[str, Any]) -> dict[str, Any]:
    return {
        "operation_id": op["operationId"],
        "produces": op["produces"],
        "consumes": op.get("consumes", []),
        "parameters": [_pb_parameter(p) for p in op["parameters"]],
        "responses": {
            "response_code": [
                {
                    "name": code,
                    "value": {
                        "response": {
                            "description": r["description"],
                            **({"schema": {"schema": _pb_schema(r["schema"])}} if "schema" in r else {}),
                        }
                    },
                }
                for code, r in op["responses"].items()
            ]
        },
        "vendor_extension": _extensions(op),
    }


def _pb_path_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {method: _pb_operation(op) for method, op in item.items() if method != "parameters"}
    if "parameters" in item:
        out["parameters"] = [_pb_parameter(p) for p in item["parameters"]]
    return out


def to_protobuf(doc: dict[str, Any]) -> bytes:
    """`doc` (from `document()`) as gnostic's `openapi.v2.Document`."""
    shaped = {
        "swagger": doc["swagger"],
        "info": doc["info"],
        "paths": {"path": _named(doc["paths"], _pb_path_item)},
        "definitions": {"additional_properties": _named(doc["definitions"], _pb_schema)},
        "security": [
            {"additional_properties": _named(requirement, lambda scopes: {"value": scopes})}
            for requirement in doc["security"]
        ],
        "security_definitions": {
            "additional_properties": _named(doc["securityDefinitions"], lambda d: {"api_key_security": d})
        },
    }
    message = _document_class()()
    json_format.ParseDict(shaped, message)
    return message.SerializeToString(deterministic=True)


@cache
def rendered(protobuf: bool) -> tuple[bytes, str]:
    """The document's bytes (protobuf or JSON) and their hash, the ETag."""
    doc = document()
    body = to_protobuf(doc) if protobuf else json.dumps(doc, separators=(",", ":")).encode()
    return body, hashlib.sha512(body).hexdigest().upper()
