"""Training threads follow the machine's load: all cores when it is quiet, the cores other work leaves free when it
is not, exactly N when told, and torch's own count back after the run."""
import os

import pytest
import torch

import vae_utils as vu
from conftest import SMALL, blob_data
from vae_utils import threads
from vae_utils.threads import ThreadGovernor, free_cores, read_cpu_times


@pytest.fixture(autouse=True)
def _two_threads_and_no_pin(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class Machine:
    """A fake clock, /proc/stat and process CPU time: `tick(seconds, others, ours)` lets time pass with `others`
    cores busy with other work and `ours` with this process."""

    def __init__(self, cpus: int = 2):
        self.now, self.busy, self.own, self.cpus = 0.0, 0.0, 0.0, cpus

    def tick(self, seconds: float, others: float, ours: float = 1.0) -> None:
        self.now += seconds
        self.busy += seconds * (others + ours)
        self.own += seconds * ours

    def governor(self, threads: int = 0) -> ThreadGovernor:
        return ThreadGovernor(threads, interval=1.0, clock=lambda: self.now, cpu_times=lambda: (self.busy, self.cpus),
                              own_time=lambda: self.own)


@pytest.mark.parametrize("cpus, others, free", [(2, 0.0, 2), (2, 0.3, 2), (2, 0.7, 1), (2, 1.4, 1), (2, 5.0, 1),
                                                (16, 3.4, 13)])
def test_the_free_cores_are_those_other_work_leaves(cpus, others, free):
    assert free_cores(cpus, others) == free


def test_a_quiet_machine_keeps_every_thread():
    machine = Machine()
    governor = machine.governor()
    for _ in range(5):
        machine.tick(1.5, others=0.1, ours=1.9)
        governor.step()
    assert torch.get_num_threads() == 2 and governor.changes == 0


def test_other_work_takes_threads_away_and_gives_them_back():
    machine = Machine()
    governor = machine.governor()
    machine.tick(1.5, others=1.2, ours=0.8)  # two busy processes beside the run
    governor.step()
    assert torch.get_num_threads() == 1
    machine.tick(1.5, others=0.05, ours=1.0)  # they finished
    governor.step()
    assert torch.get_num_threads() == 2 and governor.changes == 2


def test_it_looks_at_most_once_an_interval():
    machine = Machine()
    governor = machine.governor()
    machine.tick(0.5, others=2.0)
    governor.step()
    assert torch.get_num_threads() == 2  # half a second: not looked yet
    machine.tick(0.6, others=2.0)
    governor.step()
    assert torch.get_num_threads() == 1


def test_a_count_given_is_kept_whatever_the_load(monkeypatch):
    machine = Machine()
    governor = machine.governor(threads=1)
    machine.tick(2.0, others=0.0)
    governor.step()
    assert torch.get_num_threads() == 1 and governor.pinned
    governor.restore()
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting counts as given
    governor = machine.governor()
    machine.tick(2.0, others=2.0)
    governor.step()
    assert torch.get_num_threads() == 2 and governor.pinned


def test_without_proc_stat_nothing_changes(tmp_path):
    assert read_cpu_times(str(tmp_path / "missing")) is None
    governor = ThreadGovernor(cpu_times=lambda: None)
    governor.step()
    assert governor.pinned and torch.get_num_threads() == 2


def test_proc_stat_is_read_for_the_cpus_this_process_may_use(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 300 5000 10 0 0 0 0 0\n"
                    "cpu0 100 0 50 1000 5 0 0 0 0 0\n"
                    "cpu1 200 0 50 1000 5 10 0 40 0 0\n"
                    "cpu2 600 0 200 3000 0 0 0 0 0 0\n"
                    "intr 12345\n")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    busy, cpus = read_cpu_times(str(stat))
    ticks = os.sysconf("SC_CLK_TCK")
    assert cpus == 2 and busy == pytest.approx((150 + 300) / ticks)  # idle and iowait are not busy, steal is


def test_training_follows_the_load_and_gives_torch_its_threads_back(tmp_path, monkeypatch):
    machine = Machine()
    seen = []

    def cpu_times():
        machine.tick(1.5, others=1.5)  # every look finds two busy processes beside the run
        return machine.busy, machine.cpus

    monkeypatch.setattr(threads, "read_cpu_times", cpu_times)
    monkeypatch.setattr(threads, "INTERVAL", 0.0)
    vu.set_seed(0)
    config = vu.TrainConfig(epochs=2, batch_size=16, model=SMALL)
    vu.train(vu.VAE(SMALL), blob_data(), blob_data(16), config, progress=False,
             on_epoch_end=lambda record: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == 2


def test_a_run_with_a_thread_count_is_bit_for_bit_the_same_under_any_load(monkeypatch):
    def run():
        vu.set_seed(0)
        model = vu.VAE(SMALL)
        vu.train(model, blob_data(), blob_data(16), vu.TrainConfig(epochs=1, batch_size=16, model=SMALL, threads=1),
                 progress=False)
        return model.state_dict()

    quiet = run()
    monkeypatch.setattr(threads, "read_cpu_times", lambda: (float(os.urandom(1)[0]), 2))  # any load at all
    monkeypatch.setattr(threads, "INTERVAL", 0.0)
    busy = run()
    assert all(torch.equal(quiet[k], busy[k]) for k in quiet)


def test_threads_is_a_count():
    with pytest.raises(ValueError, match="threads"):
        vu.TrainConfig(threads=-1)


def test_a_process_that_chooses_once_gets_the_free_cores(monkeypatch):
    looks = iter([(100.0, 2), (101.3, 2)])  # 1.3 CPU seconds of other work in the half second looked at
    monkeypatch.setattr(threads, "read_cpu_times", lambda: next(looks))
    assert threads.threads_for_load(0.5) == 1
    monkeypatch.setattr(threads, "read_cpu_times", lambda: None)
    assert threads.threads_for_load(0.0) == 2
