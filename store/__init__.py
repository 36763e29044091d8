"""Data and I/O shared by the stages and the jobs: table schemas, input listing, staging, atomic writers, commit
markers, per-video publishing, and the readers of published output. No pipeline building and no Ray: it may import
``models`` only (``tests/test_layout.py`` checks the floors)."""
