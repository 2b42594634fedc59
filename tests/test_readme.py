"""The README's usage block is a test: what it tells a user to type must run."""
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "saved_models" / "fashion-mnist-vae.pt"
PRIOR = ROOT / "saved_models" / "fashion-mnist-vqvae-prior.pt"


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_readme_usage_block_runs_against_the_committed_checkpoint(tmp_path, monkeypatch):
    blocks = _python_blocks("Using vae_utils from another notebook")
    assert blocks, "the README lost its usage example"
    (tmp_path / "saved_models").mkdir()
    for committed in (CHECKPOINT, PRIOR):  # the committed run's models, as a user would have them
        shutil.copy(committed, tmp_path / "saved_models")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "my_samples.png").stat().st_size > 0


@pytest.mark.parametrize("command", ["make run", "make test"])
def test_readme_names_the_two_commands_that_the_makefile_defines(command):
    assert f"`{command}`" in (ROOT / "README.md").read_text() or f"{command}\n" in (ROOT / "README.md").read_text()
    target = command.split()[1]
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), flags=re.M)
