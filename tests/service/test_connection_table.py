"""ConnectionTable: slot counts per client address, eviction of the longest-waiting connection
when full, and the refusals (their messages name the setting)."""

from __future__ import annotations

from service.connection_guard import ConnectionLimits, ConnectionTable


class FakeConn:
    def __init__(self, table: ConnectionTable, client: str) -> None:
        self.table, self.client, self.evicted = table, client, False

    def evict(self) -> None:
        self.evicted = True
        self.table.release(self)


def admitted(table: ConnectionTable, client: str) -> FakeConn:
    conn = FakeConn(table, client)
    assert table.admit(conn) is None
    return conn


def test_each_client_address_has_its_own_cap():
    table = ConnectionTable(ConnectionLimits(max_connections=10, max_connections_per_client=2))
    first, _ = admitted(table, "10.0.0.1"), admitted(table, "10.0.0.1")
    refusal = table.admit(FakeConn(table, "10.0.0.1"))
    assert refusal is not None and "DYNALAY_MAX_CONNECTIONS_PER_CLIENT" in refusal
    admitted(table, "10.0.0.2")  # another address is not affected
    table.release(first)
    admitted(table, "10.0.0.1")  # a closed connection gives its slot back
    assert table.open == 3 and table.connections_of("10.0.0.1") == 2


def test_zero_means_no_per_client_cap():
    table = ConnectionTable(ConnectionLimits(max_connections=5, max_connections_per_client=0))
    for _ in range(5):
        admitted(table, "10.0.0.1")
    assert table.open == 5


def test_when_full_the_connection_waiting_longest_for_a_head_is_closed():
    table = ConnectionTable(ConnectionLimits(max_connections=3, max_connections_per_client=0))
    busy, older, newer = (admitted(table, f"10.0.0.{i}") for i in range(3))
    table.start_waiting(older)
    table.start_waiting(newer)
    newcomer = admitted(table, "10.0.0.9")
    assert older.evicted and not newer.evicted and not busy.evicted
    assert table.open == 3
    table.stop_waiting(newer)  # its head arrived: a request is in progress
    refusal = table.admit(FakeConn(table, "10.0.0.8"))
    assert refusal is not None and "each with a request in progress" in refusal
    assert "DYNALAY_MAX_CONNECTIONS" in refusal and not newer.evicted and not newcomer.evicted


def test_lingering_refusals_are_capped_at_one_per_slot():
    table = ConnectionTable(ConnectionLimits(max_connections=2))
    assert table.start_lingering() and table.start_lingering()
    assert not table.start_lingering()
    table.stop_lingering()
    assert table.start_lingering()
