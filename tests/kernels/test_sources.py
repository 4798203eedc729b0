"""kernels/*.cu read like llm.c's dev/cuda files (no compiler or GPU needed).

* a short comment share: at most 40% of a file's non-blank lines are comment
  lines (the long explanations live once, in kernels/README.md);
* the im2col index map is written out once, in kernels/README.md, not again
  in the kernels or in the CPU twins;
* activations.cu's kind codes are minigan/backend/cpu.py's ACTIVATIONS.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from minigan.backend import cpu

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "kernels"
SOURCES = sorted([*KERNELS.glob("*.cu"), *KERNELS.glob("*.cuh")])
MAX_COMMENT_SHARE = 0.40


def comment_share(text: str) -> float:
    """Lines that are only a comment (or inside a block comment) over all non-blank lines."""
    total = comments = 0
    in_block = False
    for line in (s.strip() for s in text.splitlines()):
        if not line:
            continue
        total += 1
        if in_block or line.startswith(("//", "/*")):
            comments += 1
            in_block = (in_block or line.startswith("/*")) and "*/" not in line
    return comments / max(total, 1)


def test_comment_share_counts_line_and_block_comments():
    text = "// a\nint x;  // code with a remark\n\n/* b\n c */\nint y;\n"
    assert comment_share(text) == pytest.approx(3 / 5)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_kernel_files_are_mostly_code(path):
    share = comment_share(path.read_text(encoding="utf-8"))
    assert share <= MAX_COMMENT_SHARE, (f"kernels/{path.name} is {share:.0%} comment lines: move the long "
                                        "explanation to kernels/README.md and point to it")


def test_the_im2col_index_map_is_written_once():
    """The map's formula appears in kernels/README.md and nowhere else among the kernels and twins."""
    formula = re.compile(r"oy\s*\*\s*SH\s*-\s*PH\s*\+\s*i\s*,\s*ox\s*\*\s*SW\s*-\s*PW\s*\+\s*j", re.IGNORECASE)
    places = [*SOURCES, KERNELS / "README.md", ROOT / "minigan" / "backend" / "cpu.py"]
    holders = [p.name for p in places if formula.search(p.read_text(encoding="utf-8"))]
    assert holders == ["README.md"]


def test_activation_codes_match_cpu_table():
    text = (KERNELS / "activations.cu").read_text(encoding="utf-8")
    enum = re.search(r"enum\s+ActivationKind\s*\{([^}]*)\}", text).group(1)
    codes = {name.strip().lower(): int(value) for name, value in re.findall(r"(\w+)\s*=\s*(\d+)", enum)}
    assert codes == cpu.ACTIVATIONS
