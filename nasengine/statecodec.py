"""Controller state as data: the store's format for ``state_dict()`` blobs, which never runs code when read.

A state is encoded to JSON for the plain values (``None``, bools, ints, floats including NaN/inf, strings,
lists, dicts with string keys) with tagged objects for what JSON lacks (tuples, dicts with other keys, bytes,
sets, numpy scalars), and a side container for arrays: numpy arrays go to an ``.npz`` (read back with
``allow_pickle=False``), torch tensors to a ``torch.save`` file (read back with ``weights_only=True``).
Decoding gives back the same types, so ``decode_state(encode_state(s))`` equals ``s`` value for value and
type for type (a tuple stays a tuple, an ``int`` key stays an ``int``).

::

    blob = encode_state(controller.state_dict())   # StateCodecError naming the path of an unsupported value
    state = decode_state(blob, where="runs/a/run.sqlite generation 3")

Blob layout: ``MAGIC``, then three parts each preceded by its length (8 bytes, big-endian): the JSON text,
the ``.npz`` bytes (empty when there are no numpy arrays) and the ``torch.save`` bytes (empty when there are
no tensors, so states without tensors need no torch).
"""
from __future__ import annotations

import base64
import io
import json
import math
import struct
import sys
from typing import Any

import numpy as np

from nasengine.errors import NasengineError

__all__ = ["MAGIC", "StateCodecError", "encode_state", "decode_state", "is_encoded_state"]

#: The first bytes of an encoded state (a pickle starts with ``\\x80``, so the two never mix up).
MAGIC = b"NASENGINE-STATE/1\n"
_TAG = "__nasengine__"
_LEN = struct.Struct(">Q")
#: Nesting deeper than this is refused (a crafted blob must not exhaust the stack).
MAX_DEPTH = 200


class StateCodecError(NasengineError):
    """A state that cannot be encoded as data, or a blob that is not a valid encoded state."""


def is_encoded_state(blob: bytes) -> bool:
    """Whether ``blob`` is in this module's format (as opposed to an old pickled state)."""
    return bytes(blob[: len(MAGIC)]) == MAGIC


def encode_state(state: Any) -> bytes:
    """``state`` (a controller's ``state_dict()``) as bytes; :class:`StateCodecError` names the path (like
    ``state['population'][3]``) of a value that is not data."""
    arrays: list[np.ndarray] = []
    tensors: list[Any] = []
    doc = _encode(state, "state", arrays, tensors, 0)
    text = json.dumps(doc, allow_nan=True, separators=(",", ":")).encode("utf-8")
    npz = b""
    if arrays:
        buf = io.BytesIO()
        np.savez(buf, **{f"a{i}": a for i, a in enumerate(arrays)})
        npz = buf.getvalue()
    pt = b""
    if tensors:
        import torch

        buf = io.BytesIO()
        torch.save(tensors, buf)
        pt = buf.getvalue()
    return b"".join([MAGIC, _LEN.pack(len(text)), text, _LEN.pack(len(npz)), npz, _LEN.pack(len(pt)), pt])


def _encode(value: Any, path: str, arrays: list, tensors: list, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise StateCodecError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise StateCodecError(f"{path}: a numpy array of Python objects is not data")
        arrays.append(np.ascontiguousarray(value))
        return {_TAG: "ndarray", "i": len(arrays) - 1}
    if isinstance(value, np.generic):
        if isinstance(value, np.object_):
            raise StateCodecError(f"{path}: a numpy object scalar is not data")
        arrays.append(np.asarray(value))
        return {_TAG: "npscalar", "i": len(arrays) - 1}
    if _is_tensor(value):
        tensors.append(value.detach().cpu())  # read back on the CPU (load_state_dict moves what it needs)
        return {_TAG: "tensor", "i": len(tensors) - 1}
    if isinstance(value, (bytes, bytearray)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if type(value) is list:
        return [_encode(v, f"{path}[{i}]", arrays, tensors, depth + 1) for i, v in enumerate(value)]
    if type(value) is tuple:
        return {_TAG: "tuple", "v": [_encode(v, f"{path}[{i}]", arrays, tensors, depth + 1)
                                     for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)) and type(value) in (set, frozenset):
        items = [_encode(v, f"{path}{{}}", arrays, tensors, depth + 1) for v in value]
        return {_TAG: type(value).__name__, "v": items}
    if type(value) is dict:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: _encode(v, f"{path}[{k!r}]", arrays, tensors, depth + 1) for k, v in value.items()}
        return {_TAG: "dict", "v": [[_encode(k, f"{path} key {k!r}", arrays, tensors, depth + 1),
                                     _encode(v, f"{path}[{k!r}]", arrays, tensors, depth + 1)]
                                    for k, v in value.items()]}
    raise StateCodecError(f"{path}: a {type(value).__module__}.{type(value).__qualname__} is not data (a state "
                          f"may hold None, bools, numbers, strings, lists, tuples, dicts, sets, bytes, numpy "
                          f"arrays and torch tensors)")


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def decode_state(blob: bytes, where: str = "controller state") -> Any:
    """The state encoded in ``blob``; :class:`StateCodecError` naming ``where`` if it is not valid."""
    blob = bytes(blob)
    if not is_encoded_state(blob):
        raise StateCodecError(f"{where}: not an encoded controller state")
    try:
        pos = len(MAGIC)
        parts = []
        for _ in range(3):
            (n,) = _LEN.unpack_from(blob, pos)
            pos += _LEN.size
            if pos + n > len(blob):
                raise ValueError("truncated")
            parts.append(blob[pos:pos + n])
            pos += n
        if pos != len(blob):
            raise ValueError("trailing bytes")
        text, npz, pt = parts
        doc = json.loads(text.decode("utf-8"))
        arrays: list[np.ndarray] = []
        if npz:
            with np.load(io.BytesIO(npz), allow_pickle=False) as f:
                arrays = [f[f"a{i}"] for i in range(len(f.files))]
        tensors: list = []
        if pt:
            import torch

            tensors = torch.load(io.BytesIO(pt), map_location="cpu", weights_only=True)
            if not isinstance(tensors, list):
                raise ValueError("the tensor part is not a list")
        return _decode(doc, arrays, tensors, 0)
    except StateCodecError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, struct.error, RecursionError, OSError) as exc:
        raise StateCodecError(f"{where}: corrupt controller state ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # torch.load's UnpicklingError and kin
        raise StateCodecError(f"{where}: corrupt controller state ({type(exc).__name__}: {exc})") from None


def _decode(doc: Any, arrays: list, tensors: list, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(doc, list):
        return [_decode(v, arrays, tensors, depth + 1) for v in doc]
    if not isinstance(doc, dict):
        return doc
    tag = doc.get(_TAG)
    if tag is None:
        return {k: _decode(v, arrays, tensors, depth + 1) for k, v in doc.items()}
    if tag == "float":
        return float(doc["v"])
    if tag == "ndarray":
        return arrays[_index(doc["i"])]
    if tag == "npscalar":
        return arrays[_index(doc["i"])][()]
    if tag == "tensor":
        t = tensors[_index(doc["i"])]
        import torch

        if not isinstance(t, torch.Tensor):
            raise ValueError("the tensor part holds a non-tensor")
        return t
    if tag == "bytes":
        return base64.b64decode(doc["v"], validate=True)
    if tag == "tuple":
        return tuple(_decode(v, arrays, tensors, depth + 1) for v in doc["v"])
    if tag == "set":
        return {_decode(v, arrays, tensors, depth + 1) for v in doc["v"]}
    if tag == "frozenset":
        return frozenset(_decode(v, arrays, tensors, depth + 1) for v in doc["v"])
    if tag == "dict":
        return {_decode(k, arrays, tensors, depth + 1): _decode(v, arrays, tensors, depth + 1) for k, v in doc["v"]}
    raise ValueError(f"unknown tag {tag!r}")


def _index(i: Any) -> int:
    if type(i) is not int or i < 0:
        raise ValueError(f"bad part index {i!r}")
    return i
