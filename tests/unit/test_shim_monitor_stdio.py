"""The monitor's stdio pumps and reactor, on plain pipes and fifos."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from shim.logs import JsonFileLog, read_entries
from shim.monitor.protocol import socket_path
from shim.monitor.reactor import Reactor
from shim.monitor.stdio import Pump, open_sink, open_source


def _run(reactor: Reactor, until: object, rounds: int = 200) -> None:
    for _ in range(rounds):
        if until():  # type: ignore[operator]
            return
        reactor.poll(0.05)
    raise AssertionError("the reactor did not get there")


def test_output_goes_to_fifo_and_log(tmp_path: Path) -> None:
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    log = JsonFileLog(str(tmp_path / "log.json"))
    reactor = Reactor()
    r, w = os.pipe()
    sink = open_sink(str(fifo))
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    done: list[bool] = []
    pump = Pump(reactor, r, sink, log=log, stream="stdout", on_done=lambda: done.append(True))
    os.write(w, b"hello\nwor")
    os.write(w, b"ld")
    os.close(w)
    _run(reactor, lambda: pump.done)
    assert done == [True]
    assert os.read(reader, 100) == b"hello\nworld"
    os.close(reader)
    log.close()
    assert [e["log"] for e in read_entries(tmp_path / "log.json")] == ["hello\n", "world"]


def test_a_full_destination_pauses_the_source(tmp_path: Path) -> None:
    fifo = tmp_path / "slow"
    os.mkfifo(fifo)
    reactor = Reactor()
    r, w = os.pipe()
    os.set_blocking(w, False)
    pump = Pump(reactor, r, open_sink(str(fifo)))
    chunk = b"x" * 65536
    written = 0
    for _ in range(8):  # more than the fifo holds; nobody reads it yet
        try:
            written += os.write(w, chunk)
        except BlockingIOError:
            break
        reactor.poll(0.01)
    assert pump.pending and not pump.done  # held, and the source is no longer read
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.close(w)
    got = 0
    for _ in range(400):
        reactor.poll(0.01)
        with contextlib.suppress(BlockingIOError):
            got += len(os.read(reader, 1 << 20))
        if pump.done and got == written:
            break
    os.close(reader)
    assert got == written and pump.done


def test_stdin_ends_only_when_asked(tmp_path: Path) -> None:
    fifo = tmp_path / "in"
    os.mkfifo(fifo)
    reactor = Reactor()
    src = open_source(str(fifo))
    r, w = os.pipe()
    pump = Pump(reactor, src, w)
    writer = os.open(fifo, os.O_WRONLY)
    os.write(writer, b"data")
    os.close(writer)  # a client leaving does not end the container's stdin
    _run(reactor, lambda: not pump.pending and os.get_blocking(r) is not None, rounds=5)
    reactor.poll(0.05)
    assert not pump.done
    pump.end_input()
    assert pump.done
    assert os.read(r, 100) == b"data"
    assert os.read(r, 100) == b""  # EOF: the pump closed the write end
    os.close(r)


def test_socket_paths_fit_sun_path() -> None:
    path = socket_path("/run/berth-shim", "a" * 76, "b" * 76)
    assert len(path.encode()) < 108
    assert path != socket_path("/run/berth-shim", "a" * 76, "b" * 75)
