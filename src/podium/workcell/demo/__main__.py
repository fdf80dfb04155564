"""``python -m podium.workcell.demo [data_dir]`` runs the workcell demo."""

from podium.workcell.demo import main

main()
