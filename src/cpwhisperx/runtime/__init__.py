"""How work runs and survives: model tasks in worker processes (``isolation``, ``worker``),
injected faults for tests, the journal that resumes a stage, atomic files."""
