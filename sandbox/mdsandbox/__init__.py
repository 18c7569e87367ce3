"""mdsandbox: the ModelDeploy platform on one machine, no cluster -- for `make demo`, e2e tests and benchmarks.

On top of the API emulator (kubeemu), the operator (modeldeploy, run as a real child process) and
the online evaluator (xraymodel.evaluator, also a child process):

    scenario_runner     a scenario from start to report: Sandbox / run_scenario
    sandbox_platform    everything below started and stopped together (Platform)
    observe             status, routing, timeline and breach timing during a run (Observer, RunState)
    report              the REPORT built from what was observed
    expectations        the e2e oracle: does the report meet the scenario's expect? (pure)
    scenario            the scenario file format (docs/scenarios.md), validated with field paths
    fleet/              simulated TF Serving pods behind Istio sidecars (aiohttp): behaviour, traffic,
                        Istio and TF Serving metrics, the TF Serving REST API
    mesh_routing        pure model of Envoy/Istio route matching, weights, mirroring, subsets, gateway binding, Services
    synthetic_golden    the synthetic golden set the fleet recognises (sandbox://golden)
    prometheus_process  the real Prometheus (Debian package) as a child process
    prometheus_api      the one (async) Prometheus query client of the sandbox and its tests
    controllers         the cluster's Deployment controller, scheduler and kubelet, against the emulator
    operator_process, evaluator_process   child-process wrappers (on kubeemu.childprocess.ChildProcess)
    timeline_png, view  the PNG timeline and the terminal views
    cli                 `modeldeploy sandbox run|validate` and `modeldeploy demo`
    crds/               Istio's CRDs (vendored), demo/ the two demo scenarios (copies of examples/)
"""
