"""The ports tests give their servers (tests/live.py `free_port`): never one the kernel may hand to an
outgoing connection meanwhile, never one another pytest-xdist worker is given, never one in use."""

import socket

import pytest

from tests import live

pytestmark = pytest.mark.skipif(
    live._ephemeral_ports_low() < live.PORT_BASE + live.PORT_BLOCK * live.PORT_BLOCKS,
    reason="this machine's ephemeral range starts below the ports' blocks: free_port asks the kernel",
)


def block_of(port: int) -> int:
    return (port - live.PORT_BASE) // live.PORT_BLOCK


def test_ports_lie_below_the_ephemeral_range_in_this_workers_block_and_are_never_given_twice(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    ports = [live.free_port() for _ in range(50)]

    assert len(set(ports)) == 50
    assert {block_of(port) for port in ports} == {2}
    assert max(ports) < live._ephemeral_ports_low()


def test_each_worker_has_a_block_of_its_own_and_a_process_outside_xdist_another(monkeypatch):
    blocks = {}
    for worker in ("gw0", "gw1", "gw7", ""):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        blocks[worker] = block_of(live.free_port())

    assert blocks == {"gw0": 1, "gw1": 2, "gw7": 8, "": 0}


def test_a_port_a_server_holds_is_passed_over(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    live.free_port()  # the process's start in its block chosen
    following = live.PORT_BASE + 4 * live.PORT_BLOCK + (live._ports_start + live._ports_taken) % live.PORT_BLOCK
    with socket.create_server(("127.0.0.1", following)):
        given = live.free_port()

    assert given != following
    assert block_of(given) == 4
