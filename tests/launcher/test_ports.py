"""webapp.launcher.ports: the ports test and benchmark stacks listen on."""

from __future__ import annotations

import socket

import pytest

from webapp.launcher import ports


def test_ports_are_below_the_ephemeral_range_free_and_never_handed_out_twice():
    low = ports.ephemeral_low()
    chosen = [ports.free_port() for _ in range(200)]
    assert len(set(chosen)) == len(chosen)
    assert all(20000 <= port < low for port in chosen), (low, sorted(chosen)[:5], sorted(chosen)[-5:])
    for port in chosen[:20]:
        with socket.create_server(("127.0.0.1", port)):  # raises if it was not free
            pass


def test_a_port_something_listens_on_is_passed_over(monkeypatch: pytest.MonkeyPatch):
    busy, other = ports.free_port(), ports.free_port()
    ports._handed_out.difference_update({busy, other})  # as if chosen by another process
    offered = iter([busy, other])
    monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(offered))
    with socket.create_server(("127.0.0.1", busy)):
        assert ports.free_port() == other


def test_a_low_ephemeral_range_falls_back_to_the_kernels_choice(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setattr(ports, "_RANGE_FILE", tmp_path / "range")
    (tmp_path / "range").write_text("1024\t65535\n")
    assert ports.ephemeral_low() == 1024
    port = ports.free_port()
    with socket.create_server(("127.0.0.1", port)):
        pass
