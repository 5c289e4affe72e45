"""The read model's law, on SQLite and PostgreSQL: for any valid history, the rows that the
incremental projection leaves equal the rows a rebuild makes, and both equal the fold of
each run's events.

Each example adds a few runs of its own to one database: their commands, interleaved, are
submitted one by one, and the projection runs in small batches between them, sometimes by a
new projector, which reads the runs it goes on with back from their rows, not from a cache.
Then the read model is rebuilt from the first event.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from infrastructure import readmodel
from infrastructure.application import Ledger
from tests import strategies
from tests.builders import FakeClock, differing_rows, opened_view, replayed_rows


def test_incremental_projection_and_rebuild_both_equal_the_fold_of_each_run(
    database_url: str,
) -> None:
    examples = itertools.count()
    with Ledger(database_url, clock=FakeClock()) as ledger, opened_view(ledger) as view:

        @given(
            history=strategies.interleaved_lifecycles(),
            batch_size=st.integers(min_value=1, max_value=4),
            data=st.data(),
        )
        def the_three_agree(
            history: list[dict[str, Any]], batch_size: int, data: st.DataObject
        ) -> None:
            prefix = f"ex{next(examples)}_"
            commands = [{**command, "runId": prefix + command["runId"]} for command in history]
            run_ids = sorted({command["runId"] for command in commands})
            runner = readmodel.projector(ledger, view, batch_size=batch_size)
            for command in commands:
                ledger.submit(command)
                if data.draw(st.booleans(), label="project now"):
                    if data.draw(st.booleans(), label="by a new projector"):
                        runner = readmodel.projector(ledger, view, batch_size=batch_size)
                    runner.run()
            runner.run()
            incremental = view.rows(run_ids)
            incremental_position = view.position()

            readmodel.rebuild(ledger, view)

            rebuilt = view.rows(run_ids)
            folded = replayed_rows(ledger, run_ids)
            head = ledger.recorder.max_notification_id()
            assert differing_rows(incremental, folded) == {}
            assert differing_rows(rebuilt, folded) == {}
            assert incremental_position == view.position() == head

        the_three_agree()
