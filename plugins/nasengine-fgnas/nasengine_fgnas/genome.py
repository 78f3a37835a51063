"""The FGNAS genome: the boolean gate masks of the supernet (METHODS §3.2).

One bit per gate ``ψ_{ℓ,c,i}`` evaluated hard (1 = the sub-feature map is alive)::

    head          C bits   the head conv's output channels                       (set H)
    blocks[b]     pw       C bits   the block's 1x1 conv output                 (P_b)
                  relu, prelu, tanh  C bits each: the activation sub-maps      (A_b = their union)
                  out      C bits   the last 3x3 conv's output (the residual)  (O_b)
    body_end      C bits   the body-end conv's output (E), or absent when the space does not gate it

JSON (the space's ``to_json``; lists of 0/1, ``true``/``false`` accepted on input)::

    {"head": [1,0,...], "blocks": [{"pw": [...], "relu": [...], "prelu": [...], "tanh": [...], "out": [...]}, ...],
     "body_end": [...] | null}

B and C are the lengths (the space's ``blocks`` and ``channels`` options); they are not repeated in the
genome. Malformed data raises :class:`nasengine.errors.ValidationError` naming the field
(``blocks[3].relu[7]``).

Vector encoding (generic controllers): the bits flat in the order above — head, then per block pw, relu,
prelu, tanh, out, then body_end (when gated) — every entry in ``[0, 1]``.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import attrs

from nasengine.errors import ValidationError
from nasengine.space import check_fields

__all__ = ["Block", "FgnasGenome", "BLOCK_FIELDS", "ACTIVATIONS", "n_bits"]

#: A block's gate groups, in genome and vector order.
BLOCK_FIELDS = ("pw", "relu", "prelu", "tanh", "out")
#: The three activation sub-maps of a block, in order (bit i of an activation type = ACTIVATIONS[i]).
ACTIVATIONS = ("relu", "prelu", "tanh")

Bits = tuple  # tuple[int, ...] of 0/1


def _bits(values: Iterable[Any]) -> Bits:
    return tuple(1 if v else 0 for v in values)


@attrs.frozen
class Block:
    """The gate masks of one searchable block (tuples of 0/1, one entry per channel)."""

    pw: Bits = attrs.field(converter=_bits)
    relu: Bits = attrs.field(converter=_bits)
    prelu: Bits = attrs.field(converter=_bits)
    tanh: Bits = attrs.field(converter=_bits)
    out: Bits = attrs.field(converter=_bits)

    @property
    def act(self) -> Bits:
        """The union of the three activation masks (a 3x3 conv channel is computed iff one of them is on)."""
        return tuple(r | p | t for r, p, t in zip(self.relu, self.prelu, self.tanh))

    def act_type(self, c: int) -> int:
        """Channel ``c``'s activation subset as a bitmask (1 relu, 2 prelu, 4 tanh; 0 = none)."""
        return self.relu[c] | (self.prelu[c] << 1) | (self.tanh[c] << 2)

    @classmethod
    def filled(cls, channels: int, value: int = 1) -> "Block":
        bits = (value,) * channels
        return cls(bits, bits, bits, bits, bits)


@attrs.frozen
class FgnasGenome:
    """All gate masks of an FGNAS supernet (see the module docstring); ``body_end`` is None when not gated."""

    head: Bits = attrs.field(converter=_bits)
    blocks: tuple[Block, ...] = attrs.field(converter=tuple)
    body_end: Bits | None = attrs.field(default=None, converter=attrs.converters.optional(_bits))

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def channels(self) -> int:
        return len(self.head)

    # ---- checks -------------------------------------------------------------------------------------------
    def check(self, blocks: int, channels: int, gate_body_end: bool) -> None:
        """Raise :class:`ValidationError` naming the field unless the masks fit ``blocks`` x ``channels`` (and
        ``body_end`` is present exactly when ``gate_body_end``)."""
        _check_mask(self.head, channels, "head")
        if len(self.blocks) != blocks:
            raise ValidationError(f"must list {blocks} blocks (the space's `blocks`), got {len(self.blocks)}",
                                  field="blocks")
        for b, block in enumerate(self.blocks):
            if not isinstance(block, Block):
                raise ValidationError(f"expected a Block, got {type(block).__name__}", field=f"blocks[{b}]")
            for name in BLOCK_FIELDS:
                _check_mask(getattr(block, name), channels, f"blocks[{b}].{name}")
        if gate_body_end:
            if self.body_end is None:
                raise ValidationError("missing: this space gates the body-end conv (gate_body_end: true)",
                                      field="body_end")
            _check_mask(self.body_end, channels, "body_end")
        elif self.body_end is not None:
            raise ValidationError("must be null: this space does not gate the body-end conv (gate_body_end: false)",
                                  field="body_end")

    # ---- JSON ---------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "head": list(self.head),
            "blocks": [{name: list(getattr(b, name)) for name in BLOCK_FIELDS} for b in self.blocks],
            "body_end": None if self.body_end is None else list(self.body_end),
        }

    @classmethod
    def from_json(cls, data: Any, blocks: int, channels: int, gate_body_end: bool) -> "FgnasGenome":
        """Parse and check (``ValidationError`` naming the field for anything malformed)."""
        if not isinstance(data, dict):
            raise ValidationError(f"expected a JSON object, got {type(data).__name__}", field="genome")
        check_fields(data, ("head", "blocks", "body_end"))
        head = _parse_mask(data["head"], channels, "head")
        raw = data["blocks"]
        if not isinstance(raw, list):
            raise ValidationError(f"must be a list of blocks, got {type(raw).__name__}", field="blocks")
        if len(raw) != blocks:
            raise ValidationError(f"must list {blocks} blocks (the space's `blocks`), got {len(raw)}", field="blocks")
        parsed = []
        for b, item in enumerate(raw):
            where = f"blocks[{b}]"
            if not isinstance(item, dict):
                raise ValidationError(f"expected an object, got {type(item).__name__}", field=where)
            check_fields(item, BLOCK_FIELDS, where)
            parsed.append(Block(*(_parse_mask(item[n], channels, f"{where}.{n}") for n in BLOCK_FIELDS)))
        end = data["body_end"]
        if gate_body_end:
            if end is None:
                raise ValidationError("must be a mask: this space gates the body-end conv (gate_body_end: true)",
                                      field="body_end")
            end = _parse_mask(end, channels, "body_end")
        elif end is not None:
            raise ValidationError("must be null: this space does not gate the body-end conv (gate_body_end: false)",
                                  field="body_end")
        return cls(head, tuple(parsed), end)

    # ---- flat bits ------------------------------------------------------------------------------------------
    def bits(self) -> list[int]:
        """The vector encoding (module docstring)."""
        out = list(self.head)
        for b in self.blocks:
            for name in BLOCK_FIELDS:
                out.extend(getattr(b, name))
        if self.body_end is not None:
            out.extend(self.body_end)
        return out

    @classmethod
    def from_bits(cls, bits: Sequence[int], blocks: int, channels: int, gate_body_end: bool) -> "FgnasGenome":
        """Inverse of :meth:`bits` (``bits`` of the right length, entries 0/1)."""
        c = channels
        head = bits[:c]
        pos = c
        parsed = []
        for _ in range(blocks):
            parsed.append(Block(*(bits[pos + i * c: pos + (i + 1) * c] for i in range(5))))
            pos += 5 * c
        end = bits[pos: pos + c] if gate_body_end else None
        return cls(head, tuple(parsed), end)

    @classmethod
    def filled(cls, blocks: int, channels: int, gate_body_end: bool, value: int = 1) -> "FgnasGenome":
        """Every gate ``value`` (1: the supernet itself)."""
        bits = (value,) * channels
        return cls(bits, tuple(Block.filled(channels, value) for _ in range(blocks)),
                   bits if gate_body_end else None)

    def alive(self) -> int:
        """The number of gates on."""
        return sum(self.bits())


def n_bits(blocks: int, channels: int, gate_body_end: bool) -> int:
    """Gate bits of a space: C (head) + 5·B·C (+ C body-end) — 5,248 for B = 16, C = 64 (METHODS §3.2)."""
    return channels * (1 + 5 * blocks + (1 if gate_body_end else 0))


def _check_mask(mask: Any, channels: int, where: str) -> None:
    if not isinstance(mask, tuple) or len(mask) != channels:
        got = len(mask) if isinstance(mask, tuple) else type(mask).__name__
        raise ValidationError(f"must be {channels} bits (the space's `channels`), got {got}", field=where)
    for i, v in enumerate(mask):
        if type(v) is not int or v not in (0, 1):
            raise ValidationError(f"must be 0 or 1, got {v!r}", field=f"{where}[{i}]")


def _parse_mask(value: Any, channels: int, where: str) -> Bits:
    if not isinstance(value, list):
        raise ValidationError(f"must be a list of {channels} bits (0/1 or true/false), got {type(value).__name__}",
                              field=where)
    if len(value) != channels:
        raise ValidationError(f"must be {channels} bits (the space's `channels`), got {len(value)}", field=where)
    for i, v in enumerate(value):
        if not (v is True or v is False or (type(v) is int and v in (0, 1))):
            raise ValidationError(f"must be 0/1 or true/false, got {v!r}", field=f"{where}[{i}]")
    return _bits(value)
