"""The FastAPI app: POST /score, GET /health, GET /metadata.

Bad input is always a 4xx with a one-line `detail` (plus the field-level `errors` for a 422), never
a 500 with a traceback: 401 for a missing or wrong bearer token (when one is set), 413 for a body
over the size limit, 422 for a body that is not JSON, misses or mistypes a field, carries an unknown
field, has too many candidates, or names a scene the run was not trained on.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's annotations at run time and
# the request model is built inside create_app (its candidate limit is a start-up option).

import hmac
import json

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from .payload import ScoreResponse, score_request
from .scorer import Scorer, ScoringError

PROTECTED = ("/score", "/metadata")  # /health stays open for load balancers and probes


def _where(loc) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def describe(errors: list[dict], max_candidates: int) -> list[dict]:
    """Pydantic's errors as {"field", "message"}, without echoing the input back."""
    out = []
    for e in errors:
        where, msg = _where(e.get("loc", ())), e.get("msg", "invalid")
        if e.get("type") == "too_long" and where == "items":
            msg = f"at most {max_candidates} candidates per request"
        elif e.get("type") == "json_invalid":
            where, msg = "body", f"not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})"
        elif e.get("type") in ("model_type", "model_attributes_type", "dict_type"):
            msg = "should be a JSON object"
        out.append({"field": where, "message": msg})
    return out


def _error(status: int, detail: str, **extra) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware in front of the app: the bearer token (before the body is read) and the
    body size limit (the declared Content-Length, and the bytes actually received)."""

    def __init__(self, app, token: str | None, max_body_bytes: int):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes

    def _authorised(self, scope) -> bool:
        if not self.token or scope["path"] not in PROTECTED:
            return True
        headers = dict(scope.get("headers") or [])
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self._authorised(scope):
            return await _error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")(
                scope, receive, send)
        too_large = _error(413, f"request body over the limit of {self.max_body_bytes:,} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await too_large(scope, receive, send)
        chunks, size = [], 0
        while True:  # read the whole (bounded) body here, then hand it to the app in one piece
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await too_large(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(scorer: Scorer, *, token: str | None = None, max_candidates: int = 1000,
               max_body_bytes: int = 4 << 20, metadata: dict | None = None):
    ScoreRequest = score_request(max_candidates)
    app = FastAPI(title="m2ctr scoring service", version="1",
                  description="Click probabilities for one user and a list of candidate items, from a "
                  "trained run and the warehouse's online feature snapshot.")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = describe(exc.errors(), max_candidates)
        first = f"{errors[0]['field']}: {errors[0]['message']}" if errors else "invalid request"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _error(422, f"invalid request: {first}{more}", errors=errors)

    @app.exception_handler(ScoringError)
    async def unscorable(request: Request, exc: ScoringError):
        return _error(422, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        # Logged with its traceback by uvicorn; the client gets one line.
        return _error(500, f"internal error: {type(exc).__name__}: {exc}"[:300])

    def score_body(body: bytes) -> bytes:
        try:
            req = ScoreRequest.model_validate_json(body)
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_input=False)) from None
        scores = scorer.score(req.user, req.items)
        return json.dumps({"scores": scores, "model": scorer.model_name,
                           "features_as_of": scorer.snapshot.as_of}).encode()

    @app.post("/score", response_model=ScoreResponse, openapi_extra=request_body_doc(ScoreRequest))
    async def score(request: Request):
        # pydantic-core parses and validates the JSON in one pass (a body parameter would have it
        # parsed twice); the work runs in a worker thread, so /health answers during a long encoding
        content = await run_in_threadpool(score_body, await request.body())
        return Response(content, media_type="application/json")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": scorer.model_name, "features_as_of": scorer.snapshot.as_of}

    meta = {
        "run": str(scorer.run_dir),
        "model": scorer.model_name,
        "runtime": scorer.runtime,
        "features_as_of": scorer.snapshot.as_of,
        "split": scorer.run.cfg.get("split"),
        "model_inputs": scorer.inputs(),
        "snapshot": {"path": str(scorer.snapshot.path), **scorer.snapshot.sizes()},
        "limits": {"max_candidates": max_candidates, "max_body_bytes": max_body_bytes},
        "auth": "bearer token" if token else "none",
        **(metadata or {}),
    }
    json.dumps(meta)  # fail at start-up, not per request, if something is not JSON

    @app.get("/metadata")
    def metadata_():
        return {**meta, "content_tables": scorer.content_tables()}

    app.add_middleware(Guard, token=token, max_body_bytes=max_body_bytes)
    add_schemas(app, ScoreRequest)
    return app


def request_body_doc(model) -> dict:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def add_schemas(app: FastAPI, model) -> None:
    """Put `model` and its parts into the OpenAPI components (the route reads the raw body, so
    FastAPI does not know them)."""
    build = app.openapi

    def openapi():
        if app.openapi_schema is None:
            doc = build()
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            parts = doc.setdefault("components", {}).setdefault("schemas", {})
            parts.update(schema.pop("$defs", {}))
            parts[model.__name__] = schema
        return app.openapi_schema

    app.openapi = openapi
