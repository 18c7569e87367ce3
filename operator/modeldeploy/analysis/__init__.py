"""Rollout analysis: metric providers (Prometheus), built-in PromQL, sandboxed custom query templates."""
