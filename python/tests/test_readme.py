"""The READMEs' Python examples run as written (as the Rust ones are doc tests): the
repository's and the package's own (python/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("readme", ["README.md", "python/README.md"])
def test_readme_python_blocks_run(readme: str) -> None:
    path = ROOT / readme
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    assert blocks, f"{readme} has Python examples"
    for block in blocks:
        # As a script runs it: Flask(__name__) finds its root path from `__main__`.
        exec(compile(block, str(path), "exec"), {"__name__": "__main__"})
