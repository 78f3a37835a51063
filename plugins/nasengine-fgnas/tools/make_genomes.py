"""Write the genome files of the published supernets (nasengine_fgnas/genomes/supernet-{S,M,L}.json): every
gate on, B = 16 / 32 / 64, C = 64, x2 (METHODS §3.1; published_architectures.json "FGNAS-supernet").

    python plugins/nasengine-fgnas/tools/make_genomes.py

One line per mask, so that the files stay readable and diffable.
"""
from __future__ import annotations

import json

from nasengine.genomefile import genome_document
from nasengine_fgnas.plugin import GENOMES_DIR, SUPERNETS
from nasengine_fgnas.space import FgnasSpace


def _dump(doc: dict) -> str:
    """JSON with each mask on one line."""
    genome = doc["genome"]
    head = {k: v for k, v in doc.items() if k != "genome"}
    lines = json.dumps(head, indent=2)[:-2] + ',\n  "genome": {\n'
    lines += f'    "head": {json.dumps(genome["head"], separators=(",", ":"))},\n    "blocks": [\n'
    blocks = []
    for b in genome["blocks"]:
        fields = ",\n".join(f'      "{k}": {json.dumps(v, separators=(",", ":"))}' for k, v in b.items())
        blocks.append("     {\n" + fields + "\n     }")
    lines += ",\n".join(blocks) + "\n    ],\n"
    lines += f'    "body_end": {json.dumps(genome["body_end"], separators=(",", ":"))}\n  }}\n}}\n'
    assert json.loads(lines) == doc
    return lines


def main() -> None:
    GENOMES_DIR.mkdir(exist_ok=True)
    for name, blocks in SUPERNETS.items():
        space = FgnasSpace(blocks=blocks, channels=64, scale=2)
        doc = genome_document("fgnas", {"blocks": blocks, "channels": 64, "scale": 2},
                              space.to_json(space.densest()), name=f"FGNAS {name}",
                              source="METHODS.md section 3.1 / published_architectures.json 'FGNAS-supernet': every gate on")
        (GENOMES_DIR / f"{name}.json").write_text(_dump(doc), encoding="utf-8")
        print(name, space.n_bits, "gates")


if __name__ == "__main__":
    main()
