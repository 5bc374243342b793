"""A million clients: what a round, a client's rows and its state cost (serial parts; the MPI runs are in
tests/test_mpi_population.py)."""

import numpy as np
import pytest

from mpifl import client_state, config
from mpifl.client_state import ClientStore, StateField, from_bfloat16, to_bfloat16
from mpifl.data.catalog import resolve
from mpifl.data.client_pool import ClientPool
from mpifl.data.shards import ClientData, Shard
from mpifl.errors import ConfigError
from mpifl.round_records import summarize
from mpifl.strategies.sampling import evaluated

SHAPE = (3, 4)


def fields(storage=None):
    return {"state.c": StateField(SHAPE, np.dtype(np.float64), storage=storage),
            "velocity": StateField((5,), np.dtype(np.float64), storage=storage)}


def fill(store, j, value):
    rows = store.open(j)
    for row in rows.values():
        row[...] = value
    store.close(j, rows)


def test_a_row_changed_after_a_checkpoint_is_put_back_from_the_undo_journal(tmp_path):
    store = ClientStore(fields(), 6, tmp_path / "s", None)
    fill(store, 1, 1.0)
    fill(store, 4, 4.0)
    store.checkpoint(2)  # round 2 is saved with rows 1 and 4 set
    fill(store, 1, -1.0)
    fill(store, 3, 3.0)
    fill(store, 1, -2.0)  # a second change of the same row is not journalled again
    store.close_files()
    again = ClientStore(fields(), 6, tmp_path / "s", 2)  # a kill, then the resume from round 2
    assert again.peek(1)["state.c"].tolist() == np.full(SHAPE, 1.0).tolist()
    assert not again.peek(3)["velocity"].any() and (again.peek(4)["velocity"] == 4.0).all()


def test_a_save_that_did_not_commit_resumes_from_the_round_before_through_both_journals(tmp_path):
    store = ClientStore(fields(), 4, tmp_path / "s", None)
    fill(store, 0, 1.0)
    store.checkpoint(5)
    fill(store, 0, 2.0)
    fill(store, 2, 2.0)
    store.checkpoint(10)  # its rank file was written, but the pointer still names round 5
    fill(store, 2, 3.0)
    store.close_files()
    back = ClientStore(fields(), 4, tmp_path / "s", 5)
    assert (back.peek(0)["state.c"] == 1.0).all() and not back.peek(2)["state.c"].any()
    assert sorted(p.name for p in (tmp_path / "s").glob("undo_*.bin")) == ["undo_000000005.bin"]


def test_a_torn_journal_entry_is_ignored(tmp_path):
    store = ClientStore(fields(), 3, tmp_path / "s", None)
    store.checkpoint(1)
    fill(store, 2, 7.0)
    store.close_files()
    journal = tmp_path / "s" / "undo_000000001.bin"
    journal.write_bytes(journal.read_bytes() + b"\x01\x02\x03")  # a kill in the middle of the next entry
    back = ClientStore(fields(), 3, tmp_path / "s", 1)
    assert not back.peek(2)["state.c"].any()


def test_rows_in_memory_round_trip_through_a_checkpoint_file():
    store = ClientStore(fields(), 3, None, None)
    fill(store, 2, 5.0)
    saved = {k: v.copy() for k, v in store.saved().items()}
    other = ClientStore(fields(), 3, None, None)
    other.load(saved)
    assert (other.peek(2)["velocity"] == 5.0).all() and not other.peek(0)["velocity"].any()


def test_bfloat16_rounds_to_nearest_even_and_float16_storage_keeps_its_precision():
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -3.14159, 1e-3, 65504.0, np.nan])
    bits = to_bfloat16(values)
    back = from_bfloat16(bits, np.dtype(np.float64))
    assert back[:2].tolist() == [1.0, 1.0]  # halfway: to the even mantissa
    assert back[2] == 1 + 4 * 2**-8  # halfway up: to the even one above
    assert abs(back[3] + 3.14159) < 2**-7 * 4 and np.isnan(back[-1])
    store = ClientStore(fields(np.dtype(np.float16)), 2, None, None)
    fill(store, 0, 1 / 3)
    assert store.peek(0)["state.c"][0, 0] == np.float64(np.float16(1 / 3)) != 1 / 3
    wide = ClientStore(fields(client_state.STORAGE["bfloat16"]), 2, None, None)
    fill(wide, 1, 1 / 3)
    assert abs(wide.peek(1)["velocity"][0] - 1 / 3) < 2**-9 and wide.arrays["velocity"].dtype == np.uint16


def test_state_that_fits_neither_memory_nor_disk_is_refused_with_what_it_needs(tmp_path):
    need = client_state.needed_bytes(fields(), 10**6)
    assert need == 10**6 * 17 * 8
    with pytest.raises(ConfigError, match=r"needs 130 MiB.*state.store = \"disk\""):
        client_state.choose_backing("memory", need, 2**20, tmp_path)
    assert client_state.choose_backing("auto", need, 2**20, tmp_path) is True  # spills to the disk
    assert client_state.choose_backing("auto", need, need, tmp_path) is False
    with pytest.raises(ConfigError, match=r"TiB.*free on .*state.dir"):
        client_state.choose_backing("disk", 2**60, 2**20, tmp_path)


def test_a_lazy_pool_builds_a_client_when_used_and_keeps_the_recent_ones_within_its_budget():
    built = []

    def build(ids):
        built.extend(ids)
        return [ClientData(Shard(np.full((10, 4), float(k)), np.zeros(10))) for k in ids]

    pool = ClientPool(build, range(100, 200), True, cache_bytes=3 * (10 * 4 * 8 + 10 * 8))
    assert built == []
    for k in (150, 151, 150, 152, 153, 150):
        assert pool[k].train.X[0, 0] == k
    assert built == [150, 151, 152, 153]  # 150 stayed: it was used last; 151 made room for 153
    assert list(pool.cache) == [152, 153, 150]
    with pytest.raises(KeyError, match="not hosted here"):
        pool[7]
    eager = ClientPool(build, range(3), False, 0).then(lambda data, ids: [ClientData(Shard(d.train.X + 1, d.train.y))
                                                                          for d in data])
    assert built[-3:] == [0, 1, 2] and eager[2].train.X[0, 0] == 3


def test_a_generated_clients_rows_are_the_same_bytes_alone_in_a_block_and_at_any_population():
    cfg = config.load(overrides=["data.name=synthetic", "data.rows_per_rank=20", "data.n_classes=10"])
    source = resolve(cfg)
    assert source.builds_clients_alone
    block = source.clients(range(0, 40), 40)
    for k in (0, 17, 39):
        alone = source.clients(range(k, k + 1), 10**6)[0]
        assert alone.train.X.tobytes() == block[k].train.X.tobytes()
        assert alone.train.y.tobytes() == block[k].train.y.tobytes()
    assert len(source.client_rows(10**6)) == 10**6


def test_summaries_are_those_numpy_computes():
    values, weights = np.array([0.2, 0.9, 0.5, 0.7]), np.array([10, 30, 20, 40])
    s = summarize(values, weights, True)
    assert s["count"] == 4 and s["mean"] == pytest.approx(values.mean())
    assert s["weighted_mean"] == pytest.approx(np.average(values, weights=weights))
    assert [s["p10"], s["p50"], s["p90"]] == pytest.approx(np.percentile(values, [10, 50, 90]).tolist())
    assert s["jain"] == pytest.approx(values.sum() ** 2 / (4 * (values ** 2).sum()))
    assert "jain" not in summarize(values, weights, False)


def test_a_recorded_round_samples_its_evaluators_from_the_clients_that_train_and_the_rest_none():
    scored, judged = evaluated(3, 7, 10**6, 0.001, None, True, validating=False)
    assert scored.size == 1000 and judged.size == 0 and np.all(np.diff(scored) > 0)
    again, _ = evaluated(3, 7, 10**6, 0.001, None, True, validating=False)
    assert again.tolist() == scored.tolist()
    assert evaluated(3, 8, 10**6, 0.001, None, True)[0].tolist() != scored.tolist()
    held = np.zeros(20, dtype=bool)
    held[[2, 5, 11]] = True
    scored, judged = evaluated(0, 1, 20, 1.0, held, True)
    assert scored.tolist() == [k for k in range(20) if not held[k]] and judged.tolist() == [2, 5, 11]
    assert [a.size for a in evaluated(0, 1, 20, 1.0, held, False)] == [0, 0]  # unrecorded: nobody evaluates
