"""The online golden-set evaluator: `modeldeploy evaluator run` (its own container image, no TensorFlow).

Every ``interval`` it sends a labelled golden set of chest X-rays to each live model version through
TF Serving's REST API and exports, per version, what a radiologist or a regulator would ask about a
new model: mean AUROC and AUROC per finding (with a bootstrap CI of the mean), sensitivity and
specificity at the operating threshold, calibration error, each finding's predicted-probability
distribution, and the prediction drift of every new version against the stable one (PSI and KS per
finding). The operator's built-in metrics ``accuracy``, ``accuracyDrift`` and ``predictionPSI`` read
them from Prometheus and gate the rollout on them (docs/evaluator.md).

Modules:
  config    evaluator.yaml (rendered by the operator, re-read every round) -> EvaluatorConfig
  golden    golden-set loading: folder (or pvc mount), http(s)/s3/gs (anonymous HTTPS)
  client    TF Serving REST predict client: timeouts, retries, bounded concurrency, strict response checks
  compute   pure NumPy: one version's evaluation, drift between two versions (reuses xraymodel.metrics)
  exporter  Prometheus exposition (own registry; /metrics and /healthz), series removed on failure
  service   the loop: per-version schedule, config re-read, publish or withdraw each version's figures
  cli       ``modeldeploy evaluator run`` (registered in modeldeploy.cli)

A version that times out, errors or answers garbage never crashes the loop: its figures are
withdrawn (the series go missing) and its sample counter does not move, so the operator sees NO
DATA and its onNoData policy decides — never a stale pass.
"""
