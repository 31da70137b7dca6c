"""The log store's tables and their versioned migrations.

A store records its schema version in `contender_schema`. Opening a store brings it to
`LATEST_VERSION` by applying, in order and in one transaction, every migration above the
version it has. A store written by contender 0.1.0 has the tables but no version row:
that is version 1. A new store is created at the latest version directly.

Migrations only add (columns, indexes, tables), so an older contender still reads a newer store,
and records are never rewritten. Version 3 adds the index the report filters on; on
PostgreSQL it also compresses newly stored JSON values with lz4 rather than pglz (old
values stay as they are, and read the same). Building that index on a large store holds
writers back while it runs (the migration is one transaction): about 1.5 s per million
records here (14.5 s for 10 million). With many workers or replicas opening one PostgreSQL
store at once, a transaction-scoped advisory lock makes one of them migrate and the
others find the work done; SQLite serialises writers by itself.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

predictions_table = sa.Table(
    "predictions",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("timestamp", sa.String(40), nullable=False, index=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("served_by", sa.String(16), nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("routing_draw", sa.Float),
    sa.Column("routing_key", sa.String(256)),
    sa.Column("champion_version", sa.String(32)),
    sa.Column("champion_predictions", sa.JSON),
    sa.Column("champion_latency_ms", sa.Float),
    sa.Column("champion_error", sa.Text),
    sa.Column("challenger_version", sa.String(32)),
    sa.Column("challenger_predictions", sa.JSON),
    sa.Column("challenger_latency_ms", sa.Float),
    sa.Column("challenger_error", sa.Text),
    # Version 2:
    sa.Column("champion_skipped", sa.String(16)),
    sa.Column("challenger_skipped", sa.String(16)),
    sa.Column("challenger_weight", sa.Float),
    sa.Column("routing_revision", sa.Integer),
)

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.JSON, nullable=False),
    # Version 4: when /feedback accepted it (null for labels imported or stored before).
    sa.Column("received_at", sa.String(40)),
)

# Version 3. `contender report` filters on the model and `--since`, and groups by the
# version pair: with `--since`, that GROUP BY is an index-only scan of the window, and
# the records and labels of a short window are read through the index (a bitmap scan)
# rather than the whole table. A report of a model's whole log still reads the table,
# which is as fast. `contender log export` orders by timestamp alone:
# `ix_predictions_timestamp` above.
model_timestamp_index = sa.Index(
    "ix_predictions_model_timestamp",
    predictions_table.c.model_name,
    predictions_table.c.timestamp,
    predictions_table.c.champion_version,
    predictions_table.c.challenger_version,
)

# Version 4: `contender replay` stores a candidate version's predictions for logged
# records beside them, one row per (request, version); re-running it inserts nothing twice.
replays_table = sa.Table(
    "replays",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("predictions", sa.JSON),
    # The request's share of its offline batch's predict time (rows / batch rows).
    sa.Column("latency_ms", sa.Float),
    # Why the version could not score these inputs (they do not fit its signature, or its
    # predict raised); `predictions` is then null.
    sa.Column("error", sa.Text),
    sa.Column("replayed_at", sa.String(40), nullable=False),
)

schema_table = sa.Table(
    "contender_schema",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

Migration = Callable[[sa.Connection], None]


def _add_columns(*names: str) -> Migration:
    def migrate(connection: sa.Connection) -> None:
        preparer = connection.dialect.identifier_preparer
        for name in names:
            column = predictions_table.c[name]
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(
                sa.text(f"ALTER TABLE predictions ADD COLUMN {preparer.quote(name)} {kind}")
            )

    return migrate


def _add_indexes(*indexes: sa.Index) -> Migration:
    def migrate(connection: sa.Connection) -> None:
        for index in indexes:
            # IF NOT EXISTS: a store that already has it (made by hand, say) is fine.
            connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))

    return migrate


def _compress_json_with_lz4(connection: sa.Connection) -> None:
    """PostgreSQL 14+ built with lz4: new JSON values are compressed with lz4, which
    `bench/pg_inserts.py` measures at several times the records/s of the default pglz
    for 100-row requests (whose inputs are 20 kB of JSON text), for values about 10 %
    larger (random floats compress little either way). Values already stored keep their
    pglz compression and read the same."""
    if connection.dialect.name != "postgresql":
        return
    has_lz4 = connection.execute(
        sa.text(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)"
        )
    ).first()
    if has_lz4 is None:
        return
    preparer = connection.dialect.identifier_preparer
    for column in predictions_table.columns:
        if isinstance(column.type, sa.JSON):
            name = preparer.quote(column.name)
            connection.execute(
                sa.text(f"ALTER TABLE predictions ALTER COLUMN {name} SET COMPRESSION lz4")
            )


def _version_3(connection: sa.Connection) -> None:
    _add_indexes(model_timestamp_index)(connection)
    _compress_json_with_lz4(connection)


def _version_4(connection: sa.Connection) -> None:
    replays_table.create(connection, checkfirst=True)
    columns = {column["name"] for column in sa.inspect(connection).get_columns("feedback")}
    if "received_at" not in columns:  # re-marked as an older version by hand: done already
        kind = feedback_table.c.received_at.type.compile(dialect=connection.dialect)
        connection.execute(sa.text(f"ALTER TABLE feedback ADD COLUMN received_at {kind}"))


MIGRATIONS: dict[int, Migration] = {
    # 0.2.0: skipped shadow work (SPEC section 1) and the routing each draw used (section 2).
    2: _add_columns(
        "champion_skipped", "challenger_skipped", "challenger_weight", "routing_revision"
    ),
    # 0.3.0: PostgreSQL at volume: the report's index, lz4 for the JSON columns.
    3: _version_3,
    # 0.4.0: replayed predictions (`contender replay`), and when each label arrived.
    4: _version_4,
}
LATEST_VERSION = max(MIGRATIONS)

# Any constant unique to contender: the key of its PostgreSQL advisory lock.
_PG_LOCK_KEY = 0x636F6E74656E6472


def upgrade(engine: sa.Engine) -> int:
    """Bring the store to `LATEST_VERSION`; returns the version it had (0: new store)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        found = _current_version(connection)
        if found == 0:
            metadata.create_all(connection)  # the tables with every index of every version
            _compress_json_with_lz4(connection)
            connection.execute(sa.insert(schema_table).values(version=LATEST_VERSION))
            return found
        if found == 1:
            schema_table.create(connection)
            connection.execute(sa.insert(schema_table).values(version=1))
        for version in range(found + 1, LATEST_VERSION + 1):
            MIGRATIONS[version](connection)
        if found < LATEST_VERSION:
            connection.execute(sa.update(schema_table).values(version=LATEST_VERSION))
        return found


def _current_version(connection: sa.Connection) -> int:
    tables = set(sa.inspect(connection).get_table_names())
    if "predictions" not in tables:
        return 0
    if "contender_schema" not in tables:
        return 1
    version = connection.execute(sa.select(sa.func.max(schema_table.c.version))).scalar()
    return int(version or 1)
