"""The workcell demo as an example script: ``python examples/workcell/demo.py [data_dir]``.

Its code and files live in :mod:`podium.workcell.demo` (``src/podium/workcell/demo/``), since
``podium demo`` runs it too: simulated nodes, a workcell on SQLite, a plate assay with progress shown.
"""

from podium.workcell.demo import main

if __name__ == "__main__":
    main()
