"""A trial gets the cores no other trial can use: --cpus-per-trial's default."""
from orchestrator.sweep.request import _default_cpus_per_trial
from orchestrator.cluster.connect import local_cluster


def test_a_lone_trial_gets_every_core_and_many_trials_share_them():
    cores = int(local_cluster().largest_node_cpus)
    assert _default_cpus_per_trial(None, trials=1, gpus=0, gpus_per_trial=1) == cores
    assert _default_cpus_per_trial(None, trials=10 * cores, gpus=0, gpus_per_trial=1) == 1
    # One GPU runs one trial at a time however many there are: that trial gets the cores.
    assert _default_cpus_per_trial(None, trials=8, gpus=1, gpus_per_trial=1) == cores
    assert _default_cpus_per_trial(None, trials=8, gpus=1, gpus_per_trial=0.5) == max(1, cores // 2)


def test_on_a_cluster_a_trial_asks_for_one_cpu():
    assert _default_cpus_per_trial("10.0.0.1:6379", trials=1, gpus=None, gpus_per_trial=1) == 1
