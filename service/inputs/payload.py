"""The body of POST /predict → a `PredictInput`, enforcing size, content type and schema.

The body is read here, never by the framework, so the size limit holds for what is actually
streamed (a missing or lying Content-Length does not help) and nothing beyond `max_body_bytes`
is ever buffered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from service.core import CLOSE, ServiceError, describe_validation_errors
from service.inputs.schemas import PredictJSON

JSON = "application/json"
MULTIPART = "multipart/form-data"
ACCEPTED_TYPES = f"{JSON} ({{'image': base64}} or {{'text': ...}}) or {MULTIPART} (field `file`)"
FORM_FIELDS = ("file", "model", "action")
MAX_MODEL_NAME = 128  # as PredictJSON.model


@dataclass(frozen=True)
class PredictInput:
    modality: str  # "image" | "text"
    image: bytes | str | None = None  # raw bytes (multipart) or base64 text (JSON)
    text: str | None = None
    model: str | None = None
    action: str | None = None  # an ACTIONS name (validated by ServedModel.action_id)


async def read_predict_input(request: Request, max_body_bytes: int) -> PredictInput:
    media_type = _media_type(request.headers)
    if media_type not in (JSON, MULTIPART):
        raise ServiceError(
            415, f"unsupported content type {media_type or '(none)'!r}; send {ACCEPTED_TYPES}"
        )
    body = await read_body(request, max_body_bytes)
    if not body:
        raise ServiceError(400, f"the request body is empty; send {ACCEPTED_TYPES}")
    if media_type == JSON:
        return parse_json(body)
    return await parse_multipart(request.headers, body)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ServiceError(400, f"invalid Content-Length {declared[:32]!r}", CLOSE)
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ServiceError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> PredictInput:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError(400, "the JSON body is not valid UTF-8") from None
    try:
        parsed = PredictJSON.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            raise ServiceError(400, f"the body is not valid JSON; send {ACCEPTED_TYPES}") from None
        detail = describe_validation_errors(errors)
        raise ServiceError(422, f"invalid JSON body: {detail}") from None
    modality = "image" if parsed.image is not None else "text"
    return PredictInput(modality, parsed.image, parsed.text, parsed.model, parsed.action)


async def parse_multipart(headers: Headers, body: bytes) -> PredictInput:
    parser = MultiPartParser(
        headers, _replay(body), max_files=1, max_fields=len(FORM_FIELDS), max_part_size=4096
    )
    parser.spool_max_size = len(body)  # the body is already in memory (and bounded): no temp file
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ServiceError(400, f"malformed multipart body: {exc.message}") from None
    try:
        _check_field_names([name for name, _ in form.multi_items()])
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ServiceError(422, "multipart body needs a file field `file` holding the image")
        return PredictInput(
            "image",
            image=await upload.read(),
            model=_model_field(form.get("model")),
            action=_text_field(form.get("action"), "action"),  # checked by the model's action_id
        )
    finally:
        await form.close()


def _check_field_names(names: list[str]) -> None:
    unknown = sorted(set(names) - set(FORM_FIELDS))
    if unknown:
        raise ServiceError(
            422, f"unknown form field(s) {unknown[:5]}; accepted: {', '.join(FORM_FIELDS)}"
        )
    # A repeated field is ambiguous (which one counts?): refuse rather than pick one.
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ServiceError(422, f"form field(s) {repeated} given more than once")


def decode_base64_image(data: str) -> bytes:
    """base64 (or a `data:image/...;base64,` URL) → bytes; runs off the event loop."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(400, "`image` is not valid base64 of an image file") from None


def _text_field(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServiceError(422, f"form field `{name}` must be text, not a file")
    return value


def _model_field(value: object) -> str | None:
    model = _text_field(value, "model")
    if model is not None and len(model) > MAX_MODEL_NAME:
        raise ServiceError(422, f"form field `model` is longer than {MAX_MODEL_NAME} characters")
    return model


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _too_large(size: int, limit: int) -> ServiceError:
    return ServiceError(413, f"the body is {size}+ bytes; the limit is {limit} bytes", CLOSE)


async def _replay(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
