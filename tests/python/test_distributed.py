"""Data parallel from Python: d2r.fit / d2r.BilevelRewardLearner over a torch.distributed Gloo group
(d2r.TorchCommunicator) on 1, 2 and 3 processes (torch.multiprocessing, init_method file://).

Deterministic reduction: the results are bit-identical for every process count. Default mode: equal
to the one-process run without a group up to the summation order (rtol below)."""

import datetime
import os

import numpy as np
import pytest

import d2r

torch = pytest.importorskip("torch", reason="torch is not installed (tools/setup-python.sh installs it)")
dist = pytest.importorskip("torch.distributed", reason="torch.distributed is not available")
mp = pytest.importorskip("torch.multiprocessing")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed has no Gloo backend in this build", allow_module_level=True)

EXPECT_GPU = os.environ.get("D2R_EXPECT_GPU") == "1"
BLOCK = 32  # rows per block: 200 rows make 7 blocks, split unevenly over 2 and 3 ranks
DEFAULT_RTOL = 1e-4  # default mode vs the one-process run (float32, reordered sums; measured: at most 2e-5)


def _data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    Y = (X @ rng.normal(size=(3, 2)) + 0.1 * rng.normal(size=(200, 2))).astype(np.float32)
    labels = (X[:, 0] > 0).astype(np.int32) + (X[:, 1] > 0.5).astype(np.int32)
    return X, Y, labels


class _Counting(d2r.TorchCommunicator):
    """Counts the all-reduces, to show that the trainers really reduced through the group."""

    calls = 0

    def allreduce_sum(self, a):
        type(self).calls += 1
        super().allreduce_sum(a)


def _runs(group, deterministic, rank, ckpt_dir):
    """Every fit of the test; returns name -> flat float64 array of its results."""
    X, Y, labels = _data()
    par = dict(group=group, deterministic_reduction=deterministic, reduction_block_rows=BLOCK) if group else {}
    out = {}
    learner = d2r.BilevelRewardLearner(preset="paper", outer_steps=2, inner_steps=4, hidden=[8], seed=3, device="cpu", **par)
    ckpt = None if ckpt_dir is None else os.path.join(ckpt_dir, f"bilevel-rank{rank}.ckpt")
    r = learner.fit(X, Y, progress=False, checkpoint=ckpt, overwrite=ckpt is not None)
    out["bilevel_reward"] = np.asarray(r.reward_params, dtype=np.float64)
    out["bilevel_policy"] = np.asarray(r.policy_params, dtype=np.float64)
    out["bilevel_nll"] = np.array([h["train"]["nll_per_dim"] for h in r.records])
    if group:
        assert learner.communicator_.stats["allreduce_calls"] > 0
        assert learner.communicator_.stats["allreduce_bytes"] > 0
        par["group"] = _Counting(group)
    f = d2r.fit(X, Y, method="nll", steps=12, hidden=[8], seed=5, device="cpu", progress=False, **par)
    out["nll_policy"] = np.asarray(f.policy_params, dtype=np.float64)
    out["nll_train"] = np.array([h["train"]["nll_per_dim"] for h in f.records])
    if group:
        assert _Counting.calls >= 12  # one gradient sum per step at least
        par["group"] = group
    c = d2r.fit(X, labels=labels, classes=3, epochs=2, batch_size=64, seed=2, device="cpu", progress=False, **par)
    out["classifier_policy"] = np.asarray(c.policy_params, dtype=np.float64)
    return out


class _Failing(d2r.TorchCommunicator):
    def allreduce_sum(self, a):
        raise OSError("peer gone")


def _check_collectives_and_errors(rank, world):
    tc = d2r.TorchCommunicator(dist.group.WORLD)
    assert (tc.rank, tc.size, tc.memory) == (rank, world, "host")
    a = np.full(5, rank, dtype=np.uint8)
    tc.broadcast(a, world - 1)
    np.testing.assert_array_equal(a, np.full(5, world - 1, dtype=np.uint8))
    b = np.arange(4, dtype=np.float64) * (rank + 1)
    tc.allreduce_sum(b)
    np.testing.assert_array_equal(b, np.arange(4) * (world * (world + 1) / 2))
    tc.barrier()
    X, Y, _ = _data()
    # A backend that cannot reduce CPU tensors is refused, naming the argument (checked on every rank,
    # before any collective).
    real = dist.get_backend
    dist.get_backend = lambda group=None: "nccl"
    try:
        with pytest.raises(ValueError, match="'group'.*backend 'nccl' cannot reduce CPU tensors"):
            d2r.fit(X, Y, method="nll", steps=1, hidden=[4], device="cpu", progress=False, group=dist.group.WORLD)
    finally:
        dist.get_backend = real
    if world == 1:  # a failing collective surfaces as an error naming it (no peer waits; 1 rank reduces
        # only in deterministic mode, the default one takes the plain path)
        with pytest.raises(RuntimeError, match="allreduce_sum failed on rank 0: .*peer gone"):
            d2r.fit(X, Y, method="nll", steps=1, hidden=[4], device="cpu", progress=False,
                    group=_Failing(dist.group.WORLD), deterministic_reduction=True)


def _resume_across_rank_counts(rank, world, tmp, out):
    """2 ranks run one outer step into a checkpoint; 3 ranks resume it for the second: the bits of
    the uninterrupted 2-step run (`out`)."""
    X, Y, _ = _data()
    par = dict(group=dist.group.WORLD, deterministic_reduction=True, reduction_block_rows=BLOCK)
    ckpt = os.path.join(tmp, "half.ckpt")
    if world == 2:
        d2r.BilevelRewardLearner(preset="paper", outer_steps=1, inner_steps=4, hidden=[8], seed=3, device="cpu", **par).fit(
            X, Y, progress=False, checkpoint=ckpt)
        return
    r = d2r.BilevelRewardLearner(preset="paper", outer_steps=2, inner_steps=4, hidden=[8], seed=3, device="cpu", **par).fit(
        X, Y, progress=False, checkpoint=ckpt, resume=True)
    assert [h["step"] for h in r.records] == [1, 2]
    np.testing.assert_array_equal(np.asarray(r.reward_params), out["bilevel_reward"])
    np.testing.assert_array_equal(np.asarray(r.policy_params, dtype=np.float64), out["bilevel_policy"])


def _loopback():
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # 127.0.0.1, whatever the host name resolves to


def _worker(rank, world, tmp, deterministic):
    _loopback()
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init-{world}-{int(deterministic)}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        out = _runs(dist.group.WORLD, deterministic, rank, tmp if deterministic else None)
        if deterministic:
            _check_collectives_and_errors(rank, world)
        if deterministic:  # refused on every rank before any collective
            with pytest.raises(d2r.ArgumentError, match="reduction_block_rows"):
                d2r.fit(*_data()[:2], method="nll", steps=1, hidden=[4], device="cpu", progress=False,
                        group=dist.group.WORLD, reduction_block_rows=0)
        if deterministic and world in (2, 3):
            _resume_across_rank_counts(rank, world, tmp, out)
        np.savez(f"{tmp}/out-{world}-{int(deterministic)}-{rank}.npz", **out)
    finally:
        dist.destroy_process_group()


def _spawn(world, tmp, deterministic):
    mp.spawn(_worker, args=(world, str(tmp), deterministic), nprocs=world, join=True)
    outs = [dict(np.load(f"{tmp}/out-{world}-{int(deterministic)}-{r}.npz")) for r in range(world)]
    for r, o in enumerate(outs[1:], 1):  # every rank holds the same results, bit for bit
        for k in outs[0]:
            np.testing.assert_array_equal(o[k], outs[0][k], err_msg=f"rank {r} vs rank 0: {k}")
    return outs[0]


def test_deterministic_reduction_is_bit_identical_on_1_2_3_processes(tmp_path):
    """Also: a 2-rank checkpoint resumed on 3 ranks continues with the same bits
    (_resume_across_rank_counts)."""
    one = _spawn(1, tmp_path, True)
    for world in (2, 3):
        many = _spawn(world, tmp_path, True)
        assert set(many) == set(one)
        for k in one:
            assert np.all(np.isfinite(one[k])) and one[k].size > 0, k
            np.testing.assert_array_equal(many[k], one[k], err_msg=f"{world} processes vs 1: {k}")
    # Rank 0 alone writes: its checkpoint exists, the other ranks' paths were not written.
    assert (tmp_path / "bilevel-rank0.ckpt").is_file() and (tmp_path / "half.ckpt").is_file()
    assert not (tmp_path / "bilevel-rank1.ckpt").exists() and not (tmp_path / "bilevel-rank2.ckpt").exists()


def test_default_reduction_matches_the_one_process_run(tmp_path):
    ref = _runs(None, False, 0, None)
    many = _spawn(3, tmp_path, False)
    for k in ref:
        assert np.all(np.isfinite(many[k])), k
        np.testing.assert_allclose(many[k], ref[k], rtol=DEFAULT_RTOL, atol=1e-6, err_msg=k)
    # The sharded run really reduced something different from one shard's own sums: the bilevel
    # trainer's reward moved from its start (U = 1) on every rank alike.
    assert not np.array_equal(many["bilevel_reward"], np.ones_like(many["bilevel_reward"]))


def test_bad_group_names_the_argument():
    X, Y, _ = _data()
    if not dist.is_initialized():
        with pytest.raises(d2r.ArgumentError, match="'group'.*not initialised"):
            d2r.fit(X, Y, method="nll", steps=1, hidden=[4], device="cpu", group=True, progress=False)
        with pytest.raises(d2r.ArgumentError, match="'group'.*not initialised"):
            d2r.BilevelRewardLearner(preset="paper", outer_steps=1, group=True).fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="'group'"):
        d2r.TorchCommunicator("world")


def _gpu_worker(rank, world, tmp):
    _loopback()
    dist.init_process_group("nccl", init_method=f"file://{tmp}/init-nccl", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        torch.cuda.set_device(rank)
        gloo = dist.new_group(backend="gloo")
        X, Y, _ = (torch.from_numpy(a).cuda() for a in _data())
        out = {}
        for name, group in (("nccl", dist.group.WORLD), ("gloo", gloo)):
            assert d2r.TorchCommunicator(group, device="cuda").memory == ("device" if name == "nccl" else "host")
            f = d2r.fit(X, Y, method="nll", steps=6, hidden=[8], seed=5, progress=False, group=group,
                        deterministic_reduction=True, reduction_block_rows=BLOCK)
            b = d2r.fit(X, Y, method="bilevel", preset="paper", outer_steps=2, inner_steps=4, hidden=[8], seed=3, progress=False,
                        group=group, deterministic_reduction=True, reduction_block_rows=BLOCK)
            out[name] = np.concatenate([f.policy_params.cpu().numpy(), np.asarray(b.reward_params, np.float32),
                                        np.asarray(b.policy_params, np.float32)])
        np.savez(f"{tmp}/gpu-{rank}.npz", **out)
    finally:
        dist.destroy_process_group()


def test_nccl_group_on_cuda_arrays(gpu, tmp_path):
    """The device-memory path (NCCL, CUDA tensors handed over zero-copy) gives the bits of the host
    path (Gloo, the sums staged through the host) in deterministic mode; one process per GPU."""
    if not torch.cuda.is_available() or not dist.is_nccl_available():
        if EXPECT_GPU:
            pytest.fail("D2R_EXPECT_GPU=1 but this torch has no CUDA or no NCCL")
        pytest.skip("this torch has no CUDA or no NCCL")
    mp.spawn(_gpu_worker, args=(1, str(tmp_path)), nprocs=1, join=True)
    out = dict(np.load(f"{tmp_path}/gpu-0.npz"))
    assert np.all(np.isfinite(out["nccl"]))
    np.testing.assert_array_equal(out["nccl"], out["gloo"])
