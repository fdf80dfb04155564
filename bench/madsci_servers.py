"""Run one of MADSci 0.8.1's own manager servers; executed by the MADSci peer venv's python (no podium import).

Usage: ``python madsci_servers.py ROLE PORT SETTINGS_JSON`` with ROLE one of ``workcell``, ``data``,
``location``. SETTINGS_JSON carries ``redis_host``, ``redis_port``, ``redis_db`` (a dedicated Redis
database, so the benchmark's keys can be removed afterwards) and, for the workcell, its
``WorkcellManagerSettings`` fields (``nodes``, ``scheduler_update_interval``, ...). The data and location
managers' URLs reach the workcell manager the way MADSci expects, through ``DATA_SERVER_URL`` and
``LOCATION_SERVER_URL`` in the environment.

MongoDB does not exist here: every manager gets MADSci's own ``InMemoryDocumentStorageHandler`` (which the
managers accept in place of a MongoDB connection). Redis is the real one (``PyCacheHandler`` over
``redis.Redis``); MADSci's ``PyCacheHandler.from_settings`` always uses database 0, so the handler is built
here with the database number given.
"""

import json
import sys

import redis
from madsci.common.db_handlers import InMemoryDocumentStorageHandler, PyCacheHandler


def cache_handler(cfg: dict) -> PyCacheHandler:
    client = redis.Redis(
        host=cfg["redis_host"], port=int(cfg["redis_port"]), db=int(cfg["redis_db"]), decode_responses=True
    )
    return PyCacheHandler(client)


def main() -> None:
    role, port, cfg = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    url = f"http://127.0.0.1:{port}"
    common = {"server_url": url, "enable_registry_resolution": False}
    if role == "workcell":
        from madsci.common.types.workcell_types import WorkcellManagerSettings
        from madsci.workcell_manager.workcell_server import WorkcellManager

        settings = WorkcellManagerSettings(**common, **cfg.get("settings", {}))
        manager = WorkcellManager(
            settings=settings,
            cache_handler=cache_handler(cfg),
            document_handler=InMemoryDocumentStorageHandler(database_name="madsci_workcells"),
        )
    elif role == "data":
        from madsci.common.types.datapoint_types import DataManagerSettings
        from madsci.data_manager.data_server import DataManager

        manager = DataManager(
            settings=DataManagerSettings(**common, **cfg.get("settings", {})),
            document_handler=InMemoryDocumentStorageHandler(database_name="madsci_data"),
        )
    elif role == "location":
        from madsci.common.types.location_types import LocationManagerSettings
        from madsci.location_manager.location_server import LocationManager

        manager = LocationManager(
            settings=LocationManagerSettings(**common, **cfg.get("settings", {})),
            cache_handler=cache_handler(cfg),
            document_handler=InMemoryDocumentStorageHandler(database_name="madsci_locations"),
        )
    else:
        raise SystemExit(f"unknown role {role!r}")
    manager.run_server(host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
