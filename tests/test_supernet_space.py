"""Search space and genome: JSON round trip, sampling inside the space, one-line errors naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from supernet.errors import SpaceError
from supernet.space import BLOCKS, Genome, SearchSpace

SPACE = SearchSpace(num_cells=4, widths=(8, 16, 32), scales=(2, 3, 4), activation="prelu", min_depth=1)


def test_genome_json_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = SPACE.sample(rng, scale=int(rng.choice([2, 3, 4])))
        text = json.dumps(g.to_dict())
        back = Genome.from_dict(json.loads(text))
        assert back == g
        assert back.to_json() == g.to_json()
        back.validate(SPACE)


def test_space_round_trip_and_defaults():
    d = SPACE.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert SearchSpace.from_dict(d) == SPACE
    assert SearchSpace.from_dict({"widths": [32, 8, 16]}).widths == (8, 16, 32)  # sorted


def test_random_genomes_cover_the_space_and_respect_min_depth():
    space = SearchSpace(num_cells=3, widths=(8, 16), min_depth=2)
    rng = np.random.default_rng(1)
    seen_blocks, seen_widths = set(), set()
    for _ in range(400):
        g = space.sample(rng)
        assert g.depth >= 2
        g.validate(space)
        for c in g.cells:
            seen_blocks.add(c.block)
            if c.block != "skip":
                seen_widths.add(c.width)
                assert len(c.layers) == BLOCKS[c.block]
    assert seen_blocks == set(BLOCKS)
    assert seen_widths == {8, 16}


def test_sampling_is_seeded():
    a = [SPACE.sample(np.random.default_rng(7)).to_json() for _ in range(3)]
    assert len(set(a)) == 1


def test_largest_and_smallest():
    big, small = SPACE.largest(3), SPACE.smallest(3)
    assert big.scale == small.scale == 3
    assert big.head == 32 and all(c.width == 32 and c.block != "skip" for c in big.cells)
    # res at 32 (2 * 32*32*9 MACs/pixel) is the costliest block for this space; wide: 32*128 + 128*32 + 32*32*9
    assert {c.block for c in big.cells} == {"res"}
    assert small.head == 8 and small.depth == 1
    assert small.cells[0].block == "dws" and small.cells[0].width == 8  # 8*9 + 8*8 MACs: the cheapest
    big.validate(SPACE)
    small.validate(SPACE)


@pytest.mark.parametrize("data, field", [
    ({"blocks": ["conv", "lstm"]}, "blocks"),
    ({"widths": [8, 0]}, "widths[1]"),
    ({"widths": []}, "widths"),
    ({"activation": "gelu"}, "activation"),
    ({"scales": [1]}, "scales[0]"),
    ({"num_cells": 2, "min_depth": 3}, "min_depth"),
    ({"depth": 3}, "depth"),
    ({"blocks": ["skip"]}, "blocks"),
])
def test_bad_space_names_the_field(data, field):
    with pytest.raises(SpaceError) as e:
        SearchSpace.from_dict(data)
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def _genome(**over):
    g = SPACE.largest(2).to_dict()
    g.update(over)
    return g


@pytest.mark.parametrize("mutate, field", [
    (lambda g: g["cells"][1].update(block="transformer"), "genome.cells[1].block"),
    (lambda g: g["cells"][2].update(width=64), "genome.cells[2].width"),
    (lambda g: g["cells"][0].update(layers=[64]), "genome.cells[0].layers[0]"),
    (lambda g: g["cells"][0].update(layers=[32, 32]), "genome.cells[0].layers"),
    (lambda g: g.update(head=64), "genome.head"),
    (lambda g: g.update(scale=5), "genome.scale"),
    (lambda g: g["cells"].pop(), "genome.cells"),
    (lambda g: g.update(activation="relu"), "genome.activation"),
    (lambda g: g.update(colour=1), "colour"),
])
def test_bad_genome_names_the_field(mutate, field):
    g = _genome()
    mutate(g)
    with pytest.raises(SpaceError) as e:
        Genome.from_dict(g).validate(SPACE)
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def test_width_too_large_says_so():
    g = _genome()
    g["cells"][2]["width"] = 64
    with pytest.raises(SpaceError, match=r"genome.cells\[2\].width: width 64 is larger than the maximum 32"):
        Genome.from_dict(g).validate(SPACE)


def test_scale_not_built_for():
    with pytest.raises(SpaceError, match="scale 8"):
        SPACE.largest(8)


def test_supernet_imports_neither_srprune_nor_compiler():
    """Dependencies point one way (DESIGN.md): a fresh interpreter importing all of supernet loads neither."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, supernet, supernet.train, supernet.proxy; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'srprune', 'compiler', 'tvm'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
