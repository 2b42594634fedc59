"""The README's usage block is a test: what it tells a user to type must run."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vae_utils as vu

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "saved_models" / "fashion-mnist-vae.pt"
PRIOR = ROOT / "saved_models" / "fashion-mnist-vqvae-prior.pt"


def _python_blocks(section: str, language: str = "python") -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.S)


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


def test_the_readme_family_of_your_own_trains_saves_loads_in_a_fresh_process_and_is_scored(tmp_path):
    """"Adding a model": the module defines and registers the family; training, loading and the CLI each run in
    a process of their own, in a folder outside the repository, as a user would run them."""
    module, train, load = _python_blocks("Adding a model")
    (tmp_path / "mlp_vae.py").write_text(module)

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout + done.stderr

    assert "['GaussianLatent', 'Sampler']" in run(sys.executable, "-c", train)
    report = run(sys.executable, "-c", load)
    assert "(mlp-vae)" in report and "active units" in report and "Fréchet distance" in report
    for line in _python_blocks("Adding a model", "bash")[0].strip().splitlines():
        words = shlex.split(line)
        assert words[:3] == ["python", "-m", "vae_utils"]
        run(sys.executable, *words[1:])
    assert vu.read_checkpoint(tmp_path / "runs" / "mlp-cli" / "best.pt")["model_config"]["latent_dim"] == 8
    assert '"model_kind": "mlp-vae"' in run(sys.executable, "-m", "vae_utils", "--import", "mlp_vae", "evaluate",
                                            "runs/mlp/last.pt", "--subset", "100", "--samples", "100")


def test_a_checkpoint_of_an_unimported_family_names_the_kind_and_what_to_import(tmp_path):
    module = _python_blocks("Adding a model")[0]
    (tmp_path / "mlp_vae.py").write_text(module)
    script = "import mlp_vae, vae_utils as vu; vu.save_checkpoint(mlp_vae.MLPVAE(), 'm.pt')"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=120)
    with pytest.raises(vu.CheckpointError, match=r"'mlp-vae' model, but no model family 'mlp-vae' is registered.*"
                                                 r"import the module that defines it"):
        vu.load_checkpoint(tmp_path / "m.pt")
