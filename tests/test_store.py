"""The results store: claims, crash recovery, and two processes writing one database."""

from __future__ import annotations

import multiprocessing as mp
import random
import sqlite3
import subprocess
import sys
import time

import pytest

from ticketlab.core.errors import TicketlabError
from ticketlab.studies.run_ids import make_run
from ticketlab.studies.store import Store


def runs(n: int):
    return [make_run("finetune", f"r{i}", {"i": i}) for i in range(n)]


def test_claim_finish_and_no_repeat(tmp_path):
    rs = runs(3)
    with Store(tmp_path) as st:
        assert st.add_runs(rs) == 3
        assert st.claim(rs[0].id)
        assert not st.claim(rs[0].id)  # held by a live process (this one)
        assert st.finish(rs[0].id, {"score": 0.5}, {"host": "h"})
        assert st.add_runs(rs) == 0  # re-planning leaves finished runs alone
        rec = st.get(rs[0].id)
        assert rec.status == "done" and rec.metrics == {"score": 0.5} and rec.attempts == 1
        assert rec.config == {"kind": "finetune", "i": 0}
        assert not st.claim(rs[0].id)
        assert not st.finish(rs[0].id, {"score": 0.9}, {})  # a second finisher does not overwrite
        assert st.get(rs[0].id).metrics == {"score": 0.5}
        # A failed run is recorded and can be claimed again.
        assert st.claim(rs[1].id)
        st.fail(rs[1].id, "boom")
        assert st.get(rs[1].id).status == "failed" and st.get(rs[1].id).error == "boom"
        assert st.claim(rs[1].id) and st.get(rs[1].id).attempts == 2
        # Released (Ctrl-C) runs go back to pending.
        st.release(rs[1].id)
        assert st.get(rs[1].id).status == "pending"
        assert st.statuses() == {rs[0].id: "done", rs[1].id: "pending", rs[2].id: "pending"}
        assert [r.id for r in st.runs(status="pending")] == [rs[1].id, rs[2].id]


def test_crashed_owner_is_reclaimed(tmp_path):
    (r,) = runs(1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with Store(tmp_path, stale_after=600) as st:
        st.add_runs([r])
        st.claim(r.id)
        # Its owner on this machine died (e.g. SIGKILL): the pid no longer exists.
        st.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(dead.stdout), r.id))
        assert not st.held_elsewhere(r.id)
        assert st.claim(r.id)
        # Another machine holds it with a fresh heartbeat: not ours to take...
        st.db.execute(
            "UPDATE runs SET host = 'other-host', pid = 1, heartbeat = ? WHERE id = ?", (time.time(), r.id)
        )
        assert st.held_elsewhere(r.id) and not st.claim(r.id)
        # ...until its heartbeat is older than stale_after.
        st.db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - 601, r.id))
        assert st.claim(r.id)


def test_bad_store_files(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(TicketlabError, match="results.sqlite: not a ticketlab results store"):
        Store(tmp_path)
    newer = tmp_path / "newer"
    newer.mkdir()
    Store(newer).close()
    db = sqlite3.connect(newer / "results.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(TicketlabError, match="written by a newer ticketlab"):
        Store(newer)
    with pytest.raises(TicketlabError, match="sweep directory not found"):
        Store(tmp_path / "missing" / "results.sqlite")


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_of_an_earlier_schema_is_refused_and_left_as_it_was(tmp_path, readonly):
    """No store is converted: one of an earlier schema (here without the later `predictions` table)
    is refused in one line, before anything is written to it or beside it."""
    old = tmp_path / "old"
    old.mkdir()
    Store(old).close()
    db = sqlite3.connect(old / "results.sqlite")
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("DROP TABLE predictions")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    before = (old / "results.sqlite").read_bytes()
    earlier = r"written by an earlier ticketlab \(store schema 2; this one reads schema 3\)"
    with pytest.raises(TicketlabError, match=earlier):
        Store(old, readonly=readonly)
    assert (old / "results.sqlite").read_bytes() == before
    assert sorted(p.name for p in old.iterdir()) == ["results.sqlite"]


def _worker(path: str, ids: list[str], seed: int, out) -> None:
    """Claim and finish every run it can, in its own order, as a second sweep process would."""
    store = Store(path)
    order = list(ids)
    random.Random(seed).shuffle(order)
    ran = []
    for i, run_id in enumerate(order):
        if store.claim(run_id):
            time.sleep(random.Random(i).random() * 0.002)
            store.finish(run_id, {"by": seed}, {"pid": 0})
            ran.append(run_id)
        store.set_meta(f"progress-{seed}", i)
    store.close()
    out.put((seed, ran))


def test_two_processes_share_one_store(tmp_path):
    rs = runs(150)
    ids = [r.id for r in rs]
    with Store(tmp_path) as st:
        st.add_runs(rs)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), ids, seed, out)) for seed in (1, 2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # Every run was done exactly once, by one of the two writers, and the database is intact.
    assert set(results[1]).isdisjoint(results[2])
    assert set(results[1]) | set(results[2]) == set(ids)
    with Store(tmp_path) as st:
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for seed, ran in results.items():
            assert all(st.get(i).status == "done" and st.get(i).metrics == {"by": seed} for i in ran)
        assert st.get_meta("progress-1") == st.get_meta("progress-2") == len(ids) - 1


def _open_at_once(path: str, start) -> None:
    start.wait()
    with Store(path) as st:
        st.set_meta(f"opened-{mp.current_process().name}", 1)


def test_processes_creating_one_store_at_once(tmp_path):
    """Switching a new database to WAL takes a lock SQLite does not wait for (2 of 15 trials
    failed before the retry): openers retry."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(8)
    procs = [ctx.Process(target=_open_at_once, args=(str(tmp_path), start)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8
    with Store(tmp_path) as st:
        assert st.db.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'opened-%'").fetchone()[0] == 8


def test_rows_whose_json_holds_no_run_are_corrupt_rows(tmp_path, tiny_bert_dir, capsys):
    """Valid JSON of the wrong shape (a status no writer sets, a config without the fields its
    readers take, a finished run without metrics or with a score that is not a number) is a corrupt
    row like unreadable JSON: `report` and `--status` leave it out with one warning each, naming
    the store and run, instead of a KeyError / TypeError traceback."""
    import sweep_fakes as fakes
    from conftest import error_line, run
    from ticketlab.studies import run_sweep

    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        methods=["full", "omp"],
        pretrain_eval=None,
        search_curve=None,
        data_curve=None,
    )
    run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None)
    with Store(tmp_path / "sweep") as st:
        ft = [r.id for r in st.runs(kind="finetune")]
        search, other_search = (r.id for r in st.runs(kind="search")[:2])
    # The meta entries the report reads, of the wrong shape: one line naming the store and entry.
    for key, value, shape in (
        ("studies", '{"x": 5}', "a mapping of study names to lists of run ids"),
        ("plan", '{"a": 1}', "a list of run ids"),
        ("spec", "[1, 2]", "a mapping"),
        ("ids", '"x"', "an integer"),
    ):
        db = sqlite3.connect(tmp_path / "sweep" / "results.sqlite")
        with db:
            old = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        line = error_line(capsys, "report", tmp_path / "sweep", "--out", tmp_path / "report")
        assert f"results.sqlite: corrupt entry {key!r} (not {shape})" in line
        with db:
            if old is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute("UPDATE meta SET value = ? WHERE key = ?", (old[0], key))
        db.close()
    edits = {
        search: ("status", "'weird'", "status 'weird' is not one of"),
        ft[0]: ("config", "'{}'", "config has no 'method'"),
        ft[1]: ("metrics", "NULL", "a finished run without metrics"),
        ft[2]: ("metrics", """'{"score": "high"}'""", "no metric name and finite score"),
        ft[3]: ("metrics", """'{"metric": "accuracy", "score": 1e999}'""", "score inf"),
        ft[4]: ("config", """'{"method": "omp", "sparsity": 0.5}'""", "config has no 'mask'"),
        ft[5]: ("metrics", """'{"metric": "accuracy", "score": 50.0, "steps": "many"}'""", "steps 'many'"),
        ft[6]: ("metrics", """'{"metric": "accuracy", "score": 50.0}'""", "no held-out score and no finite"),
        other_search: ("metrics", """'{"achieved_sparsity": "half"}'""", "achieved sparsity 'half'"),
    }
    db = sqlite3.connect(tmp_path / "sweep" / "results.sqlite")
    for run_id, (column, value, _) in edits.items():
        db.execute(f"UPDATE runs SET {column} = {value} WHERE id = ?", (run_id,))
    db.commit()
    db.close()
    code, _, err = run(capsys, "report", tmp_path / "sweep", "--out", tmp_path / "report")
    assert code == 0 and "Traceback" not in err, err
    for run_id, (_, _, why) in edits.items():
        assert f"results.sqlite: run {run_id}: corrupt row (" in err and why in err, (run_id, why)
    code, out, err = run(capsys, "sweep", "--status", tmp_path / "sweep")  # reads statuses only
    assert code == 0 and "Traceback" not in err, err
    for run_id in (search, ft[1]):
        assert f"run {run_id}: corrupt row (" in err and edits[run_id][2] in err
    db = sqlite3.connect(tmp_path / "sweep" / "results.sqlite")
    with db:  # the record of the inputs: read before the sweep writes anything of this run
        db.execute("INSERT OR REPLACE INTO meta VALUES ('inputs', '5')")
    db.close()
    written = (tmp_path / "sweep" / "spec.json").stat().st_mtime_ns
    with pytest.raises(TicketlabError, match="results.sqlite: corrupt entry 'inputs'"):
        run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None)
    assert (tmp_path / "sweep" / "spec.json").stat().st_mtime_ns == written


def test_corrupt_rows_and_a_full_disk_are_one_line_naming_the_store(tmp_path, capsys):
    """One reader/writer path: a row that is not JSON, or SQLite's 'disk is full', is a
    TicketlabError naming the store (and the run); reading every run leaves a corrupt one out."""
    rs = runs(3)
    with Store(tmp_path) as st:
        st.add_runs(rs)
        st.claim(rs[0].id)
        st.finish(rs[0].id, {"score": 0.5}, {})
        st.db.execute("UPDATE runs SET metrics = '{not json' WHERE id = ?", (rs[0].id,))
        st.db.execute("UPDATE runs SET config = '[1, 2]' WHERE id = ?", (rs[1].id,))  # JSON, wrong shape
        st.db.execute("INSERT OR REPLACE INTO meta VALUES ('plan', 'nope')")
        with pytest.raises(TicketlabError, match=f"results.sqlite: run {rs[0].id}: corrupt row \\(metrics"):
            st.get(rs[0].id)
        assert [r.id for r in st.runs()] == [rs[2].id]  # the others are left out, with a warning each
        err = capsys.readouterr().err
        assert f"warning: {st.path}: run {rs[0].id}: corrupt row" in err and f"run {rs[1].id}" in err
        with pytest.raises(TicketlabError, match="results.sqlite: corrupt entry 'plan'"):
            st.get_meta("plan")
        # A full disk: SQLite's own SQLITE_FULL, from a database that may not grow.
        pages = st.db.execute("PRAGMA page_count").fetchone()[0]
        st.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(TicketlabError, match="results.sqlite: cannot use the results store .*full"):
            st.add_runs(runs(2000))
        assert st.statuses()[rs[2].id] == "pending"  # rolled back, and the store still reads
    ro = Store(tmp_path, readonly=True)  # what --status and the report open: no writes
    with ro, pytest.raises(TicketlabError, match="cannot use the results store"):
        ro.set_meta("x", 1)


def test_reading_a_store_leaves_no_files_beside_it(tmp_path):
    """A finished store (WAL mode, closed) read by the report leaves its folder as it was, during the
    read too (a plain or `mode=ro` connection creates -wal and -shm files: a committed store's checkout
    shows changes); with a writer at work (its -wal there) a reader sees its committed rows."""
    with Store(tmp_path) as st:
        st.add_runs(runs(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]
    with Store(tmp_path, readonly=True) as ro:
        assert len(ro.runs()) == 3 and ro.get_meta("plan") is None
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]
    with Store(tmp_path) as writer:  # a sweep at work: its log beside the store
        writer.add_runs(runs(5)[3:])
        assert (tmp_path / "results.sqlite-wal").exists()
        with Store(tmp_path, readonly=True) as ro:
            assert len(ro.runs()) == 5


def test_a_committed_store_reads_without_a_trace(tmp_path):
    """`load_results` (what `ticketlab report` reads) on a copy of a committed store: no new file."""
    import shutil
    from pathlib import Path

    from ticketlab.studies.report.results import load_results

    committed = Path(__file__).parent.parent / "docs" / "results" / "mask-init" / "results.sqlite"
    shutil.copy(committed, tmp_path / "results.sqlite")
    res = load_results(tmp_path)
    assert res.comparisons() and sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]


def test_a_store_copy_is_one_file_with_every_row_even_mid_write(tmp_path):
    """A snapshot to commit is one file: rows still in a writer's `-wal` are in it, and the copy is
    out of WAL mode, so opening it with any SQLite client makes no side files to commit by mistake."""
    from ticketlab.studies.store import copy_store

    live, kept = tmp_path / "live", tmp_path / "kept"
    live.mkdir()
    kept.mkdir()
    with Store(live) as writer:
        writer.add_runs(runs(4))
        assert (live / "results.sqlite-wal").stat().st_size > 0  # rows not yet in the main file
        copy_store(live / "results.sqlite", kept / "results.sqlite")
    db = sqlite3.connect(kept / "results.sqlite")  # a plain client, as `sqlite3 results.sqlite` is
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
    db.close()
    assert sorted(p.name for p in kept.iterdir()) == ["results.sqlite"]


def test_no_sqlite_side_file_is_committed():
    """`-wal`, `-shm` and `-journal` files are a store's state mid-use: git ignores them, and none is
    tracked (a store committed mid-transaction would hold half of it there)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    side = [f for f in listed.stdout.splitlines() if f.endswith(("-wal", "-shm", "-journal"))]
    assert side == []
    names = [f"docs/results/x/results.sqlite{s}" for s in ("-wal", "-shm", "-journal")]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=root, capture_output=True)
    assert ignored.stdout.decode().split() == names


def test_a_decimal_score_is_exact_and_every_score_is_stored_bit_for_bit(tmp_path):
    """Accuracy is one division of integers, so 524 right of 1,000 is 52.4 (100 * 0.524 would be
    52.400000000000006); the store and every JSON file keep a float's bits, so a score recomputed from
    a run's predictions equals the stored one exactly."""
    import json

    import numpy as np

    from ticketlab.core.files.atomic import atomic_write_json, to_json
    from ticketlab.studies.run_ids import make_run
    from ticketlab.tasks.metrics import accuracy

    labels = np.zeros(1000, dtype=np.int64)
    assert accuracy(np.r_[np.zeros(524), np.ones(476)].astype(np.int64), labels) == 52.4
    assert 100 * 0.524 == 52.400000000000006  # the arithmetic the metric avoids
    pearson = 0.1 + 0.2  # 0.30000000000000004: a float the writer must not round
    assert json.loads(to_json({"s": pearson}))["s"] == pearson and to_json(float("nan")) == "null"
    run = make_run("finetune", "ft", {"model": "m", "seed": 1})
    with Store(tmp_path / "s") as store:
        store.add_runs([run])
        assert store.claim(run.id)
        store.finish(run.id, {"score": 52.4, "r": pearson}, {})
        assert store.get(run.id).metrics == {"score": 52.4, "r": pearson}
    atomic_write_json(tmp_path / "r.json", {"best": {"accuracy": 52.4}})
    assert (tmp_path / "r.json").read_text() == '{\n  "best": {\n    "accuracy": 52.4\n  }\n}\n'


def test_opening_a_store_keeps_this_process_locks_on_it(tmp_path):
    """Another Store opened and closed in a process (a heartbeat's) leaves the SQLite locks of the
    process's open connection in place: a second process that opens the database and closes it is
    not its last user, so it does not checkpoint it and delete the write-ahead log the first process
    still appends to, and a row the first writes afterwards reaches the file. (Closing any
    descriptor of a file releases every POSIX lock a process holds on it: a check that opened the
    store to see that it is a regular file dropped them.)"""
    rs = runs(2)
    with Store(tmp_path) as st:
        st.add_runs(rs)
        assert st.claim(rs[0].id)
        with Store(tmp_path):  # a heartbeat's connection, in this process
            pass
        other = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT 1 FROM runs').fetchall()"
        subprocess.run([sys.executable, "-c", other, str(tmp_path / "results.sqlite")], check=True)
        assert (tmp_path / "results.sqlite-wal").exists()  # not taken for the last user's
        assert st.finish(rs[0].id, {"score": 0.5}, {})
    with Store(tmp_path, readonly=True) as again:
        assert again.get(rs[0].id).status == "done"
