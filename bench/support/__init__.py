"""What every part of the bench stands on; imports nothing else of the bench.

Child processes (`procs`), the services a run uses (`services`: broker,
databases, Redis), the hub's environment (`hubenv`), CPU and memory (`meter`,
`memory`), the commit clock (`commits`), py-spy (`profile`), `stats`.
"""
