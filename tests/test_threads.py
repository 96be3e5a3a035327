"""engine/threads.py: the training process takes the cores other processes leave free (measured from /proc/stat),
adapts while training, honours --threads and torch's own count, and gives the caller's count back."""
import pytest
import torch

from ofasys_fs.engine import threads as threads_module
from ofasys_fs.engine.threads import CHECK_SECONDS, CpuMeter, TrainingThreads, busy_seconds, free_cores
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task


@pytest.mark.parametrize("usable, busy, free", [
    (2, 0.0, 2), (2, 0.25, 2), (2, 0.5, 1), (2, 1.0, 1), (2, 3.5, 1), (8, 2.5, 5), (8, 0.0, 8), (1, 0.0, 1),
])
def test_free_cores(usable, busy, free):
    assert free_cores(usable, busy) == free


def test_busy_seconds_sums_the_process_cpus_only(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  900 0 300 5000 10 0 0 0 0 0\n"
                    "cpu0 100 0 50 2000 5 3 2 0 0 0\n"
                    "cpu1 200 10 40 1000 5 0 0 5 0 0\n"
                    "cpu2 600 0 210 2000 0 0 0 0 0 0\n"
                    "intr 12345\n")
    ticks = (100 + 50 + 3 + 2) + (200 + 10 + 40 + 5)  # idle and iowait are not busy; cpu2 is not ours
    assert busy_seconds([0, 1], str(stat)) == pytest.approx(ticks / threads_module.os.sysconf("SC_CLK_TCK"))
    assert busy_seconds([0], str(tmp_path / "missing")) is None


class FakeMachine:
    """A clock and the readings CpuMeter takes: CPU-seconds busy on our CPUs, and this process's CPU seconds."""

    def __init__(self, cpus: int = 2):
        self.now = self.busy = self.own = 0.0
        self.cpus = list(range(cpus))

    def run(self, seconds: float, ours: float, others: float) -> None:
        """`seconds` pass with this process keeping `ours` cores busy and other processes `others` (what each got)."""
        self.now += seconds
        self.own += ours * seconds
        self.busy += min(len(self.cpus), ours + others) * seconds

    def meter(self) -> CpuMeter:
        return CpuMeter(self.cpus, read_busy=lambda cpus: self.busy, read_own=lambda: self.own, clock=lambda: self.now)


def test_cpu_meter_reports_what_other_processes_used():
    machine = FakeMachine()
    meter = machine.meter()
    machine.run(2.0, ours=0.5, others=1.0)
    assert meter.busy_elsewhere() == pytest.approx(1.0)
    machine.run(1.0, ours=1.0, others=1.0)  # two runs that each want both cores get one each
    assert meter.busy_elsewhere() == pytest.approx(1.0)
    assert CpuMeter([0], read_busy=lambda cpus: None).busy_elsewhere() is None  # no /proc/stat: no measure


@pytest.fixture
def two_threads_allowed():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_threads_follow_the_free_cores_and_are_given_back(two_threads_allowed):
    machine = FakeMachine()
    meter = machine.meter()
    threads = TrainingThreads(None, meter, clock=lambda: machine.now, sleep=lambda s: machine.run(s, 0.0, 1.0))
    assert threads.count == 1 and torch.get_num_threads() == 1  # another process held a core at the start
    assert "at most 2" in threads.describe()
    machine.run(CHECK_SECONDS / 2, ours=1.0, others=0.0)
    assert threads.adjust() is None  # measured only every CHECK_SECONDS
    machine.run(CHECK_SECONDS, ours=1.0, others=0.0)
    assert threads.adjust() == "threads 1 -> 2: cores became free" and torch.get_num_threads() == 2
    machine.run(CHECK_SECONDS, ours=1.0, others=1.0)  # another run started: both share the two cores
    assert "threads 2 -> 1" in threads.adjust() and torch.get_num_threads() == 1
    machine.run(CHECK_SECONDS, ours=1.0, others=1.0)
    assert threads.adjust() is None
    threads.close()
    assert torch.get_num_threads() == 2


def test_fixed_threads_and_torchs_own_count_are_limits(two_threads_allowed):
    machine = FakeMachine(cpus=4)
    fixed = TrainingThreads(3, machine.meter())
    assert fixed.count == 3 and torch.get_num_threads() == 3 and fixed.adjust() is None and "--threads" in fixed.describe()
    fixed.close()
    assert torch.get_num_threads() == 2
    auto = TrainingThreads(None, machine.meter(), clock=lambda: machine.now, sleep=lambda s: machine.run(s, 0.0, 0.0))
    assert auto.count == 2  # four idle cores, but torch was set to 2 (OMP_NUM_THREADS works the same way)
    auto.close()
    torch.set_num_threads(1)
    single = TrainingThreads(None, machine.meter())
    assert single.count == 1 and single.meter is None  # nothing to adapt: no measuring


def test_training_logs_its_threads_and_restores_the_callers(tmp_path, capsys):
    rows = [{"src": f"w{i} w{i + 1}", "tgt": f"w{i}"} for i in range(8)]
    task = Task(name="copy", instruction="copy [TEXT:src] -> [TEXT:tgt]").add_dataset(rows, "train")
    before = torch.get_num_threads()
    Trainer(arch="micro", device="cpu", max_update=2, batch_size=4, threads=2, no_save=True, num_codes=0,
            num_bins=16).fit(tasks=[task])
    assert "threads 2 (--threads)" in capsys.readouterr().out
    assert torch.get_num_threads() == before
