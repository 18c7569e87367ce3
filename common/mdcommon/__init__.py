"""What the operator and the model tool chain (with its online evaluator) share, and nothing else.

Stdlib only, so every image can carry it: the operator image (distribution ``modeldeploy``) and
the evaluator image (distribution ``modeldeploy-model``) both include this package.

    durations   Go-style durations ("30s", "1m30s"): the API's and the evaluator config's syntax
    cli         the one ``modeldeploy`` command: command groups come from installed distributions
"""
