"""The coordinator and its workers speak JSON over their sockets, never pickles: a worker runs the
bench's own code, which can reach the connection."""

import pickle
from multiprocessing import Pipe

import pytest

from imgbench.forensics import worker
from imgbench.forensics.workers import ab_worker


class Alive:
    def poll(self):
        return None


def coordinator_end(conn):
    w = worker.Worker.__new__(worker.Worker)
    w.conn, w.proc, w.name = conn, Alive(), "candidate worker"
    return w


def test_messages_travel_as_json_both_ways():
    here, there = Pipe()
    w, channel = coordinator_end(here), ab_worker.Channel(there)
    channel.send(("times", [0.01, 0.02], False))
    assert w.recv() == ["times", [0.01, 0.02], False]
    w.send("burst", 5, 0.0)
    assert there.recv_bytes() == b'["burst", 5, 0.0]'
    w.put(["a::test_x", "a::test_y"])
    assert channel.recv() == ["a::test_x", "a::test_y"]


class Planted:
    def __reduce__(self):
        return (print, ("ran in the coordinator",))


def test_a_pickle_from_a_worker_is_refused_not_loaded(capsys):
    here, there = Pipe()
    there.send_bytes(pickle.dumps(Planted()))
    with pytest.raises(worker.ABError, match="sent something that is not JSON: out of step"):
        coordinator_end(here).recv()
    assert "ran in the coordinator" not in capsys.readouterr().out
