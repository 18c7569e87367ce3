"""mdsandbox: the ModelDeploy platform on one machine, no cluster -- for `make demo`, e2e tests and benchmarks.

On top of the API emulator (kubeemu), the operator (modeldeploy, run as a real child process) and
the online evaluator (xraymodel.evaluator, also a child process):

    runner              a scenario from start to report: starts everything below, plays the events
    scenario            the scenario file format (docs/scenarios.md), validated with field paths
    fleet               simulated TF Serving pods behind Istio sidecars (aiohttp), their metrics
    mesh_routing        pure model of Envoy/Istio route matching, weights, mirroring, subsets
    synthetic_golden    the synthetic golden set the fleet recognises (sandbox://golden)
    prometheus_process  the real Prometheus (Debian package) as a child process, plus queries
    controllers         fake Deployment/ReplicaSet/Pod controllers against the emulator
    operator_process, evaluator_process, processes   the child-process wrappers
    report, view        the PNG timeline and the terminal view
    cli                 `modeldeploy sandbox run|validate` and `modeldeploy demo`
    crds/               Istio's CRDs (vendored), demo/ the two demo scenarios (copies of examples/)
"""
