"""A trial gets the cores no other trial can use: --cpus-per-trial's default; seeds of one
configuration that outnumber the cores all run at once on a share of them."""
from orchestrator.sweep.request import _default_cpus_per_trial, _seed_share
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


def test_seeds_that_outnumber_the_cores_run_at_once_on_a_share():
    """mnist-cpu's 3 fresh seeds on 2 cores: each reserves 2/3 of a CPU, so the third does not
    wait for a round of its own; a search (several configurations), seeds that fit the cores, a
    GPU or a cluster keep whole CPUs."""
    cores = local_cluster().largest_node_cpus
    seeds = int(cores) + 1
    share = _seed_share(None, trials=1, seeds=seeds, gpus=0)
    assert cores - 1e-3 < share * seeds <= cores  # all fit, as Ray counts (units of 1/10,000)
    assert _seed_share(None, trials=1, seeds=int(cores), gpus=0) is None
    assert _seed_share(None, trials=2, seeds=seeds, gpus=0) is None
    assert _seed_share(None, trials=1, seeds=seeds, gpus=1) is None
    assert _seed_share("10.0.0.1:6379", trials=1, seeds=seeds, gpus=None) is None
