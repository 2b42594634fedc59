"""The README and the docs pages are tests: the code they tell a user to type must run."""
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vae_utils as vu

ROOT = Path(__file__).resolve().parent.parent


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's package, which `make data` installs


def _blocks(page: Path, language: str = "python") -> list[str]:
    """The page's code blocks in that language, in order; ```python notest blocks are left out."""
    found = re.findall(rf"^( *)```{language}\n(.*?)^ *```", page.read_text(), flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in found]  # blocks inside a list item are indented


def _python_blocks(section: str, language: str = "python") -> list[str]:
    """The blocks of the docs page whose title is section."""
    page = next(p for p in PAGES if p.read_text().startswith(f"# {section}\n"))
    return _blocks(page, language)


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "models.md"], ids=lambda p: p.name)
def test_the_python_blocks_of_every_page_run(page, tmp_path, monkeypatch):
    """What a page tells a user to type runs, from a folder outside the repository, on the real data set
    (docs/models.md has its own test below: its blocks are a module and scripts in fresh processes)."""
    blocks = _blocks(page)
    if not blocks:
        pytest.skip(f"{page.name} has no python block")
    if not SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (make data)")
    from dataclasses import replace

    import vae_utils.data as data

    real = replace(data.DATASETS["fashion-mnist"], system_dirs=(str(SYSTEM_FASHION_MNIST),))
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", real)  # the test isolation hides system copies
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page.relative_to(ROOT)), "exec"), namespace)
    if page.name == "README.md":
        assert (tmp_path / "my_samples.png").stat().st_size > 0


def test_the_readme_is_a_guide_first_and_links_every_reference_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert text.index("## Two commands") < text.index("## What the committed run gives")
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in text, f"the README does not link {page.name}"


def test_links_between_pages_point_at_files_that_exist():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


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
