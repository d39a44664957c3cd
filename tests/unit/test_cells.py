"""Cells (``cells.py``): which cell a run is in, where each cell's keys fall, adding shares up."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from coditect_tasks import keys
from coditect_tasks.cells import MAX_CELLS, added, cell_tag
from coditect_tasks.errors import ConfigError
from coditect_tasks.settings import Settings

CLUSTER = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


def test_a_run_id_names_its_cell_and_an_earlier_id_is_cell_0s() -> None:
    for cell in (0, 1, 9, 15, MAX_CELLS - 1):
        run_id = keys.new_run_id(cell)
        assert keys.cell_of(run_id) == cell
        assert keys.run_id_in(run_id, 0) == run_id[: keys.RUN_ID_DIGITS]  # the random digits stay
    assert len(keys.new_run_id(0)) == 32  # one cell: the ids a deployment always made
    assert keys.cell_of("5f10d411ece0b3f9512bc028b69b274d") == 0 and keys.cell_of("r1") == 0


def test_cell_0_keeps_every_key_and_the_others_rename_only_the_tag() -> None:
    assert keys.in_cell(keys.LEASES, 0) == keys.LEASES == "coditect:{0}:leases"
    assert keys.in_cell(keys.LEASES, 3) == f"coditect:{{{cell_tag(3)}}}:leases"
    run_id = keys.new_run_id(3)
    assert keys.run_prefix(run_id) == f"coditect:{{{cell_tag(3)}}}:run:{run_id}:"
    assert keys.taken_after(f"{run_id}:node:2").startswith(f"coditect:{{{cell_tag(3)}}}:taken-after:")
    assert keys.idempotency("k", 3) == f"coditect:{{{cell_tag(3)}}}:idempotency:k"


@pytest.mark.parametrize("cells", [3, 16, 64])
def test_the_cells_spread_evenly_over_a_clusters_primaries(cells: int) -> None:
    """Three primaries holding a third of the slots each hold a third of the cells, give or take one."""
    slots = [key_slot(keys.route(cell).encode()) for cell in range(cells)]
    assert len(set(slots)) == cells
    per_primary = [
        sum(1 for slot in slots if third * 16384 // 3 <= slot < (third + 1) * 16384 // 3) for third in range(3)
    ]
    assert max(per_primary) - min(per_primary) <= max(2, cells // 8), per_primary


def test_shares_add_up_whole_numbers_staying_whole() -> None:
    shares = [{"runs|succeeded": "3", "duration_sum|echo": "0.5"}, {"runs|succeeded": "4", "duration_sum|echo": "1"}]
    assert added(shares) == {"runs|succeeded": "7", "duration_sum|echo": "1.5"}
    assert added([]) == {}


def test_more_than_one_cell_needs_a_cluster() -> None:
    assert Settings().cells == 1
    assert Settings(broker_url="redis://127.0.0.1:1", redis_url=CLUSTER).cells == 16
    env = {"CODITECT_BROKER_URL": "redis://127.0.0.1:1", "CODITECT_REDIS_URL": CLUSTER, "CODITECT_REDIS_CELLS": "4"}
    assert Settings.from_env(env).cells == 4
    with pytest.raises(ConfigError, match="CODITECT_REDIS_CELLS: more than 1 cell needs a Redis Cluster"):
        Settings.from_env({"CODITECT_BROKER_URL": "redis://127.0.0.1:1", "CODITECT_REDIS_CELLS": "2"})
    with pytest.raises(ConfigError, match="CODITECT_REDIS_CELLS: '0' is not a positive whole number"):
        Settings.from_env({**env, "CODITECT_REDIS_CELLS": "0"})
    with pytest.raises(ConfigError, match="257 is over 256"):
        Settings.from_env({**env, "CODITECT_REDIS_CELLS": "257"})
