"""torchrun + DistributedDataParallel on CPU (gloo, 2 real processes): the same run as one process."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import vae_utils as vu
from vae_utils.distributed import shard

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.fixture(autouse=True)
def _own_temporary_folder(tmp_path, monkeypatch):
    """torchrun's log folders (torchelastic_*) go under the test's folder, not the machine's /tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def _train_args(idx_root, out, epochs=1, *extra):
    return ["-m", "vae_utils", "train", "--data-dir", str(idx_root), "--epochs", str(epochs), "--subset", "41",
            "--val-size", "8", "--batch-size", "16", "--latent-dim", "3", "--precision", "fp32", "--out", str(out), "--quiet", *extra]


def _run(cmd, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, **kwargs)


@pytest.mark.parametrize("n, parts", [(16, 2), (9, 2), (1, 2), (10, 3)])
def test_shards_cover_the_batch_once_in_order(n, parts):
    slices = [shard(n, parts, i) for i in range(parts)]
    assert [i for s in slices for i in range(n)[s]] == list(range(n))
    assert max(s.stop - s.start for s in slices) - min(s.stop - s.start for s in slices) <= 1


def test_two_processes_train_like_one_with_the_same_global_batch(idx_root, tmp_path):
    one = _run([sys.executable, *_train_args(idx_root, tmp_path / "one", 2)])
    two = _run([*TORCHRUN, *_train_args(idx_root, tmp_path / "two", 2)])
    assert one.returncode == 0 and two.returncode == 0, _errors(two.stderr)
    assert json.loads(two.stdout)["epochs"] == 2  # rank 0 alone prints the JSON
    h1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["history"]
    h2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["history"]
    for a, b in zip(h1, h2):  # 41 images, batches of 16: the last one (9) splits 5 + 4
        for key in ("train_loss", "train_kl", "val_neg_elbo"):  # the same validation split on both ranks
            assert a[key] == pytest.approx(b[key], rel=1e-5)
    m1, m2 = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two"))
    assert m1["selected_epoch"] == m2["selected_epoch"]
    assert m1["test_neg_elbo"] == pytest.approx(m2["test_neg_elbo"], rel=1e-5)
    w1 = vu.load_checkpoint(tmp_path / "one" / "last.pt").state_dict()
    w2 = vu.load_checkpoint(tmp_path / "two" / "last.pt").state_dict()
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5, rtol=1e-4) for k in w1)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "config.toml", "last.pt",
                                                                    "metrics.json", "reconstructions.png",
                                                                    "samples.png", "tensorboard"]  # rank 0, once
    writers = {p.name.split(".")[-2] for p in (tmp_path / "two" / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1  # one process id in the log's file names: rank 0's
    assert vu.read_checkpoint(tmp_path / "two" / "last.pt")["world_size"] == 2


def test_sigterm_to_the_launcher_stops_both_ranks_and_the_resume_is_bit_identical(idx_root, tmp_path):
    epochs = 40
    straight = _run([*TORCHRUN, *_train_args(idx_root, tmp_path / "straight", epochs)])
    assert straight.returncode == 0, straight.stderr[-2000:]
    out = tmp_path / "split"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*TORCHRUN, *_train_args(idx_root, out, epochs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "training stopped by SIGTERM" in err
    stopped = vu.read_checkpoint(out / "last.pt")
    assert len(stopped["history"]) < epochs  # it stopped early, and saved
    resumed = _run([*TORCHRUN, *_train_args(idx_root, out, epochs, "--resume", str(out / "last.pt"))])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = vu.load_checkpoint(tmp_path / "straight" / "last.pt").state_dict()
    b = vu.load_checkpoint(out / "last.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


NAN_ON_RANK_1 = r"""
import os, sys, torch, vae_utils as vu
sys.path.insert(0, sys.argv[2])
from conftest import SMALL, blob_data
model = vu.VAE(SMALL)
if os.environ["RANK"] == "1":  # poison the third step's loss on one process only
    loss, calls = model.loss, []
    def poisoned(x, *args, **kwargs):
        terms = loss(x, *args, **kwargs)
        calls.append(1)
        return terms._replace(total=terms.total * float("nan")) if len(calls) == 3 else terms
    model.loss = poisoned
try:
    vu.train(model, blob_data(64), None, vu.TrainConfig(epochs=2, batch_size=16, model=SMALL), progress=False)
except vu.NonFiniteLossError as err:
    open(os.path.join(sys.argv[1], os.environ["RANK"] + ".stopped"), "w").write(str(err))
"""

SCORE = r"""
import json, os, sys, torch, vae_utils as vu
sys.path.insert(0, sys.argv[2])
from conftest import SMALL, blob_data
torch.manual_seed(0)
model, data = vu.VAE(SMALL).eval(), blob_data(45, seed=2)
result = {**vu.evaluate(model, data, batch_size=8), **vu.iwae_nll(model, data, k=7, batch_size=4)}
if os.environ.get("RANK", "0") == "0":
    json.dump(result, open(os.path.join(sys.argv[1], "score.json"), "w"))
"""


def test_a_nan_on_one_rank_stops_both(tmp_path):
    tests = os.path.dirname(__file__)
    result = _run([*TORCHRUN, _script(tmp_path, NAN_ON_RANK_1), str(tmp_path), tests])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "0.stopped").exists() and (tmp_path / "1.stopped").exists()
    assert "epoch 1, step 3/4" in (tmp_path / "0.stopped").read_text()


def test_the_evaluation_is_the_same_on_one_and_two_processes(tmp_path):
    tests, script = os.path.dirname(__file__), _script(tmp_path, SCORE)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert _run([sys.executable, script, str(tmp_path / "one"), tests]).returncode == 0
    two = _run([*TORCHRUN, script, str(tmp_path / "two"), tests])
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "score.json").read_text()) for d in ("one", "two"))
    for key in ("neg_elbo", "recon", "kl", "iwae_nll"):
        assert a[key] == pytest.approx(b[key], rel=1e-9)  # the same noise per image, sums in another order


def _errors(stderr):
    """The lines of the ranks' output worth reading (torchrun's own report is long)."""
    return "\n".join(line for line in stderr.splitlines() if "error" in line.lower() and "elastic" not in line)[-3000:]


def _script(folder, text):
    path = folder / "script.py"
    path.write_text(text)
    return str(path)


def test_resuming_with_another_number_of_processes_continues_and_says_it_is_not_bit_exact(idx_root, tmp_path):
    out = tmp_path / "run"
    first = _run([*TORCHRUN, *_train_args(idx_root, out, 1)])
    assert first.returncode == 0, _errors(first.stderr)
    alone = _run([sys.executable, *_train_args(idx_root, out, 2, "--resume", str(out / "last.pt"))])
    assert alone.returncode == 0 and "trained by 2 process(es), this run has 1" in alone.stderr
    assert "not bit-exactly" in alone.stderr and json.loads(alone.stdout)["epochs"] == 2


def test_a_vqvae_codebook_is_the_same_on_two_processes_as_on_one(idx_root, tmp_path):
    args = ["-m", "vae_utils", "train", "--model", "vqvae", "--codebook-size", "16", "--data-dir", str(idx_root),
            "--epochs", "2", "--subset", "41", "--batch-size", "16", "--precision", "fp32", "--quiet"]
    one = _run([sys.executable, *args, "--out", str(tmp_path / "one")])
    two = _run([*TORCHRUN, *args, "--out", str(tmp_path / "two")])
    assert one.returncode == 0 and two.returncode == 0, _errors(two.stderr)
    b1 = vu.load_checkpoint(tmp_path / "one" / "last.pt").codebook.state_dict()
    b2 = vu.load_checkpoint(tmp_path / "two" / "last.pt").codebook.state_dict()
    # EMA counts and sums all-reduced, the data-dependent initial entries drawn from the whole global batch
    assert torch.equal(b1["idle_steps"], b2["idle_steps"])
    for key in ("embedding", "ema_count", "ema_sum"):
        assert torch.allclose(b1[key], b2[key], atol=1e-4, rtol=1e-4), key
