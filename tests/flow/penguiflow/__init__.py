"""PenguiFlow 2.2.5's own tests and examples, run against podium.flow through an import hook."""
