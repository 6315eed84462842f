"""The Textual dashboard (live capture or replay of a recording). It draws the model's Snapshot and
TaskDetail objects and computes no analysis of its own."""
