"""``python -m podium`` runs the ``podium`` command."""

from podium.cli import main

main()
