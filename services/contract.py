"""The service's HTTP contract beyond BentoML's defaults (services/service.py mounts it): JSON bodies only
(415 otherwise), 400s that name each field at fault in the declared error schema, and an OpenAPI
document that says so."""

from __future__ import annotations

import json

from starlette.responses import JSONResponse

# A body of these types is read as JSON (text/plain: what navigator.sendBeacon sends; "": a client that names none).
JSON_TYPES = {"application/json", "text/plain", ""}
API_ROUTES = {"/search", "/similar", "/recommend", "/feedback", "/admin/reload"}


class ClearErrors:
    """ASGI middleware that keeps the API to its contract:

    - the POST endpoints read JSON, so a body of another type (a form, a multipart body without its
      boundary) gets a 415 naming what to send, where BentoML's form reader would fail with a 500;
    - BentoML answers a request that fails validation with ``{"error": "1 validation error for
      SearchRequestIODescriptor", "detail": [...]}``, which names no field and does not match the error
      schema its own OpenAPI declares (``detail`` a string): the 400 is rewritten to name each field
      and what is wrong with it, in that schema;
    - the OpenAPI document (/docs.json) states what the service does beyond BentoML's defaults: a
      body is required, 415 for a body that is not JSON, 401 and 409 from /admin/reload.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] == "/docs.json":
            await self.app(scope, receive, _rewriting(scope, receive, send, 200, _documented))
        elif scope["method"] != "POST" or scope["path"] not in API_ROUTES:
            await self.app(scope, receive, send)
        elif (media := _media_type(scope)) not in JSON_TYPES:
            await JSONResponse({"error": f"Content-Type {media!r} is not accepted: send a JSON body with "
                                         f"Content-Type: application/json"}, status_code=415)(scope, receive, send)
        else:
            await self.app(scope, receive, _rewriting(scope, receive, send, 400, _plain_400))


def _media_type(scope) -> str:
    sent = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    return sent.split(";")[0].strip().lower()


def _rewriting(scope, receive, send, status: int, transform):
    """A ``send`` that holds a response of this status and sends ``transform(body)`` as JSON instead."""
    held: dict = {}

    async def rewrite(message) -> None:
        if message["type"] == "http.response.start" and message["status"] == status:
            held["body"] = b""
            return
        if "body" not in held:
            await send(message)
            return
        held["body"] += message.get("body", b"")
        if not message.get("more_body"):
            await JSONResponse(transform(held["body"]), status_code=status)(scope, receive, send)

    return rewrite


ERROR_SCHEMA = {"type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}


def _documented(body: bytes) -> dict:
    spec = json.loads(body)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path in API_ROUTES & set(spec.get("paths", {})):
        operation = spec["paths"][path]["post"]
        # BentoML inlines a copy of the request and answer models that drops "or null" from optional
        # fields; the same models under components/schemas keep it: refer to those.
        bodies = [operation.get("requestBody", {}), operation["responses"].get("200", {})]
        for media in (b.get("content", {}).get("application/json", {}) for b in bodies):
            if media.get("schema", {}).get("title") in schemas:
                media["schema"] = {"$ref": f"#/components/schemas/{media['schema']['title']}"}
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True
        operation["responses"]["415"] = {"description": "the body is not JSON", **error}
    feedback = spec.get("paths", {}).get("/feedback", {}).get("post")
    if feedback is not None:
        feedback["responses"]["503"] = {"description": "the event log is unavailable: nothing recorded, send again", **error}
    reload = spec.get("paths", {}).get("/admin/reload", {}).get("post")
    if reload is not None:
        reload["responses"]["401"] = {"description": "admin token missing or wrong", **error}
        reload["responses"]["409"] = {"description": "the champion could not be loaded; the old one serves", **error}
    return spec


def _plain_400(body: bytes) -> dict:
    """A 400 body in the declared schema: ``error`` names each field at fault, ``detail`` repeats it."""
    try:
        answer = json.loads(body)
    except ValueError:
        return {"error": body.decode("utf-8", "replace")[:1000] or "bad request"}
    answer = answer[0] if isinstance(answer, list) and answer else answer  # BentoML wraps some errors in a list
    problems = answer.get("detail") if isinstance(answer, dict) else None
    if isinstance(problems, list):
        named = "; ".join(f"{'.'.join(str(p) for p in problem.get('loc', ())) or 'body'}: {problem.get('msg', '')}"
                          for problem in problems if isinstance(problem, dict))
        return {"error": named or str(answer.get("error", "bad request")), "detail": named}
    return {"error": str(answer.get("error", "bad request")) if isinstance(answer, dict) else str(answer)}
