"""Retention on SQLite: deleting what finished long ago, one bounded batch at a time.

A message's id sorts by the moment it was made and is never later than its creation
(`smsmesh.model.new_message_id`), so anything that ended before a cutoff has an id
below `first_message_id_at(cutoff)`: the primary key bounds the scan, and the hot path
pays for no extra index. Finished webhook jobs are found by the partial index
`webhooks_finished` (schema version 4). A message whose webhook is still pending stays
until the job ends.

Receipt keys are deleted under every receipt scope in use (`rules.part_key_rows`).
"""

from __future__ import annotations

from smsmesh.model import first_message_id_at
from smsmesh.store.rules import FINAL_STATES_SQL, RECEIPT_SCOPES_SQL, part_key_rows
from smsmesh.store.sqlite_tx import Tx, qmarks

_PENDING = "(SELECT message_id FROM webhooks WHERE state = 'pending')"


def purge_batch(tx: Tx, older_than: float, limit: int) -> tuple[int, int, int]:
    """Delete up to `limit` final messages and up to `limit` MO messages that ended
    before `older_than` (with parts, receipt keys and timelines), and up to `limit`
    webhook jobs finished before it. Returns how many of each were removed."""
    conn = tx.conn
    bound = first_message_id_at(older_than)
    ids = [
        row[0]
        for row in conn.execute(
            f"""SELECT id FROM messages
                WHERE id < ? AND state IN ({FINAL_STATES_SQL}) AND updated_at < ?
                  AND id NOT IN {_PENDING}
                ORDER BY id LIMIT ?""",
            (bound, older_than, limit),
        )
    ]
    if ids:
        marks = qmarks(len(ids))
        parts = conn.execute(
            f"SELECT message_id, part, smsc_id FROM parts WHERE message_id IN ({marks})", ids
        ).fetchall()
        scopes = [row[0] for row in conn.execute(RECEIPT_SCOPES_SQL)]
        conn.executemany(
            """DELETE FROM part_keys
               WHERE connection = ? AND key = ? AND message_id = ? AND part = ?""",
            part_key_rows(parts, scopes),
        )
        conn.execute(f"DELETE FROM parts WHERE message_id IN ({marks})", ids)
        conn.execute(f"DELETE FROM events WHERE message_id IN ({marks})", ids)
        conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
    inbound = [
        row[0]
        for row in conn.execute(
            f"""SELECT id FROM inbound
                WHERE id < ? AND received_at < ? AND id NOT IN {_PENDING}
                ORDER BY id LIMIT ?""",
            (bound, older_than, limit),
        )
    ]
    if inbound:
        marks = qmarks(len(inbound))
        conn.execute(f"DELETE FROM events WHERE message_id IN ({marks})", inbound)
        conn.execute(f"DELETE FROM inbound WHERE id IN ({marks})", inbound)
    hooks = conn.execute(
        """DELETE FROM webhooks WHERE id IN (
               SELECT id FROM webhooks WHERE state <> 'pending' AND updated_at < ?
               ORDER BY updated_at LIMIT ?)""",
        (older_than, limit),
    ).rowcount
    return len(ids), len(inbound), hooks
