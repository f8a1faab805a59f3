"""What travels over the wire: JSON for values, spaces and errors, exact both ways.

The server (:mod:`textgym.server.app`) and the client (:mod:`textgym.server.client`) share these
functions, so whatever one encodes the other decodes to an equal value:

* :func:`encode` / :func:`decode`: any value an env returns (observations, rewards, infos, reset
  options). JSON has no numpy types, tuples or non-finite floats, so those travel tagged:
  ``{"__ndarray__": {"dtype", "shape", "data"}}`` (object arrays element by element),
  ``{"__numpy__": dtype, "value": x}`` for numpy scalars, ``{"__tuple__": [...]}``,
  ``{"__float__": "nan" | "inf" | "-inf"}`` and ``{"__control_points__": {...}}``
  (:class:`~textgym.envs.control_points.ControlPoints`). Python floats keep their exact value (JSON writes
  the shortest repr, which reads back to the same double).
* :func:`encode_observation` / :func:`decode_observation`: an observation as OpenEnv's
  ``observation`` field, a JSON object of plain lists (``{"input_ids": [...], ...}``; a text
  observation is ``{"text": ...}``), read back with the dtypes and shapes of the space.
* :func:`encode_space` / :func:`decode_space`: the Gymnasium spaces textgym uses (Dict, Box,
  Discrete, Text, Tuple).
* :func:`error_payload` / :func:`raise_error`: an exception as ``{"type", "message", "code"}``,
  raised on the client as textgym's class of the same name.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
from gymnasium import spaces

from textgym import errors
from textgym.envs.control_points import ControlPoints

# Error codes: OpenEnv's WebSocket codes, plus the ones a session server needs.
INVALID_JSON = "INVALID_JSON"
VALIDATION_ERROR = "VALIDATION_ERROR"
EXECUTION_ERROR = "EXECUTION_ERROR"
CAPACITY_REACHED = "CAPACITY_REACHED"
SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
UNAUTHORIZED = "UNAUTHORIZED"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"

# HTTP status of each code (an env's own error is a 400 when it is textgym's, else a 500).
HTTP_STATUS = {
    INVALID_JSON: 400,
    VALIDATION_ERROR: 400,
    EXECUTION_ERROR: 400,
    CAPACITY_REACHED: 503,
    SESSION_NOT_FOUND: 404,
    UNAUTHORIZED: 401,
    REQUEST_TOO_LARGE: 413,
}


class ProtocolError(Exception):
    """A request the server refuses before any env sees it; ``code`` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# -- values ------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data that :func:`decode` turns back into an equal value."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return {"__numpy__": value.dtype.str, "value": encode(value.item())}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            data = [encode(v) for v in value.reshape(-1).tolist()]
        elif np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            data = [encode(float(v)) for v in value.reshape(-1)]
        else:
            data = value.reshape(-1).tolist()
        shape = list(value.shape)
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": shape, "data": data}}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cannot send a dict key of type {type(k).__name__}: {k!r:.60}")
            out[k] = encode(v)
        return out
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, ControlPoints):
        return {"__control_points__": encode(dataclasses.asdict(value))}
    if isinstance(value, list):
        return [encode(v) for v in value]
    raise TypeError(f"cannot send a value of type {type(value).__name__} over the wire")


def decode(data: Any) -> Any:
    """The value :func:`encode` encoded."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__ndarray__" in data:
        spec = data["__ndarray__"]
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "O":
            array = np.empty(len(spec["data"]), dtype=object)
            array[:] = [decode(v) for v in spec["data"]] if spec["data"] else []
        else:
            array = np.array([decode(v) for v in spec["data"]], dtype=dtype)
        return array.reshape(spec["shape"])
    if "__numpy__" in data:
        return np.dtype(data["__numpy__"]).type(decode(data["value"]))
    if "__float__" in data:
        return float(data["__float__"])
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__control_points__" in data:
        return ControlPoints(**decode(data["__control_points__"]))
    return {k: decode(v) for k, v in data.items()}


def dumps(payload: Any) -> str:
    """``payload`` (already encoded) as compact JSON text."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


# -- observations ------------------------------------------------------------------------------


def encode_observation(obs: Any) -> dict[str, Any]:
    """An observation as OpenEnv's ``observation`` object: arrays as plain (nested) lists, text
    as ``{"text": ...}`` (a tuple of texts, from a vector env, as a list)."""
    if isinstance(obs, dict):
        return {k: np.asarray(v).tolist() for k, v in obs.items()}
    if isinstance(obs, (str, tuple)):
        return {"text": list(obs) if isinstance(obs, tuple) else obs}
    raise TypeError(f"cannot send an observation of type {type(obs).__name__}")


def decode_observation(data: dict[str, Any], space: spaces.Space, num_envs: int | None) -> Any:
    """The observation :func:`encode_observation` encoded, with ``space``'s dtypes and shapes
    (``num_envs``: a vector env's batch, ``space`` being its single space)."""
    if isinstance(space, spaces.Dict):
        batch = () if num_envs is None else (num_envs,)
        return {
            k: np.asarray(data[k], dtype=sub.dtype).reshape(batch + sub.shape)
            for k, sub in space.spaces.items()
        }
    return data["text"] if num_envs is None else tuple(data["text"])


# -- spaces ------------------------------------------------------------------------------------


def encode_space(space: spaces.Space) -> dict[str, Any]:
    """A Gymnasium space as JSON (the kinds textgym's envs and wrappers use)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: encode_space(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [encode_space(s) for s in space.spaces]}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": encode(space.low),
            "high": encode(space.high),
            "dtype": np.dtype(space.dtype).str,
        }
    if isinstance(space, spaces.Text):
        return {
            "type": "Text",
            "min_length": space.min_length,
            "max_length": space.max_length,
            "charset": "".join(sorted(space.character_set)),
        }
    raise TypeError(f"cannot send a space of type {type(space).__name__}")


def decode_space(data: dict[str, Any]) -> spaces.Space:
    """The space :func:`encode_space` encoded."""
    kind = data["type"]
    if kind == "Dict":
        return spaces.Dict({k: decode_space(s) for k, s in data["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([decode_space(s) for s in data["spaces"]])
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if kind == "Box":
        low, high = decode(data["low"]), decode(data["high"])
        return spaces.Box(low, high, shape=low.shape, dtype=np.dtype(data["dtype"]))
    if kind == "Text":
        return spaces.Text(
            data["max_length"], min_length=data["min_length"], charset=data["charset"]
        )
    raise ValueError(f"unknown space type {kind!r}")


def json_schema(space: spaces.Space) -> dict[str, Any]:
    """A JSON schema of what :func:`encode_observation` writes for ``space`` (OpenEnv's
    ``/schema``)."""
    if isinstance(space, spaces.Dict):
        return {
            "type": "object",
            "properties": {k: json_schema(s) for k, s in space.spaces.items()},
            "required": list(space.spaces),
        }
    if isinstance(space, spaces.Box):
        item = {"type": "integer" if np.issubdtype(space.dtype, np.integer) else "number"}
        for size in reversed(space.shape):
            item = {"type": "array", "items": item, "minItems": size, "maxItems": size}
        return item
    if isinstance(space, spaces.Discrete):
        return {"type": "integer", "minimum": int(space.start), "maximum": int(space.n - 1)}
    if isinstance(space, spaces.Text):
        props = {"text": {"type": "string", "maxLength": space.max_length}}
        return {"type": "object", "properties": props, "required": ["text"]}
    return {}


# -- errors ------------------------------------------------------------------------------------


def error_payload(error: BaseException) -> dict[str, Any]:
    """``{"type", "message", "code"}`` for ``error`` (a :class:`ProtocolError` or an env's)."""
    if isinstance(error, ProtocolError):
        return {"type": "ProtocolError", "message": str(error), "code": error.code}
    return {"type": type(error).__name__, "message": str(error), "code": EXECUTION_ERROR}


def http_status(error: BaseException) -> int:
    if isinstance(error, ProtocolError):
        return HTTP_STATUS[error.code]
    return 400 if isinstance(error, errors.TextgymError) else 500


_BY_CODE = {
    SESSION_NOT_FOUND: errors.SessionNotFoundError,
    UNAUTHORIZED: errors.ServerAuthError,
    REQUEST_TOO_LARGE: errors.InvalidArgumentError,
    VALIDATION_ERROR: errors.InvalidArgumentError,
}


def remote_error(payload: dict[str, Any]) -> Exception:
    """The exception a client raises for an error ``payload``: textgym's class of the same name
    for an env's textgym error, else by ``code``, else :class:`~textgym.errors.RemoteEnvError`
    naming the server-side class."""
    kind, message = str(payload.get("type", "")), str(payload.get("message", ""))
    code = payload.get("code")
    cls = getattr(errors, kind, None)
    if code == EXECUTION_ERROR and isinstance(cls, type) and issubclass(cls, errors.TextgymError):
        return cls(message)
    if code in _BY_CODE:
        return _BY_CODE[code](f"server: {message}")
    if kind == "ProtocolError":  # capacity, a malformed request
        return errors.RemoteEnvError(f"server: {message}")
    return errors.RemoteEnvError(f"server: {kind}: {message}")
