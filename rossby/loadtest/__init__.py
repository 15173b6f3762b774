"""``rossby loadtest``: simulated users against one or more Rossby servers.

Layout:

    config     LoadConfig (every knob) and the operation mix
    stats      per-RPC HdrHistograms, error counts, a per-second timeline
    audit      the delivery audit (lost / duplicate / raw repeat), per device
    device     one simulated device speaking the raw gRPC API with Hawk
    worker     one load-generating process: register, run the mix, drain
    coordinator  spawns the processes, barriers, live progress, merging
    report     JSON report, PNG plot, console summary
    cli        argument parsing; ``main(argv)`` is what ``rossby loadtest`` runs

The full description (semantics of the audit, limitations) is in
docs/benchmarks.md, section "Load test and ceilings".
"""
