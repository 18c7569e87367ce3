"""ModelDeploy's web dashboard (`modeldeploy dashboard`): every ModelDeployment's rollout, live, in a browser.

A separate distribution (modeldeploy-dashboard, dashboard/pyproject.toml) on top of the operator's
public vocabulary (names, status fields, the analysis PromQL, the manual-action annotations); the
operator never imports it. Modules: board (pure view model), watch (list+watch), series
(Prometheus range queries), server (aiohttp + SSE), app (the process), cli (the command group).
"""
