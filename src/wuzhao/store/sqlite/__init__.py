"""The embedded store: one SQLite file in WAL mode (see ``store.api`` for the contract).

Split by what the tables hold; ``SqliteStore`` is all of them over one connection.
"""

from wuzhao.store.sqlite.functions import FunctionTables
from wuzhao.store.sqlite.records import RecordTables
from wuzhao.store.sqlite.tenancy import TenancyTables
from wuzhao.store.sqlite.triggers import TriggerTables


class SqliteStore(FunctionTables, TenancyTables, TriggerTables, RecordTables):
    pass


__all__ = ["SqliteStore"]
