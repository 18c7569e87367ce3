"""kubeemu: a Kubernetes API server emulator for tests, on 127.0.0.1, built on kmock and aiohttp.

Generic: any CRD, discovery, kubectl tables, watches with bookmarks, JSON/merge/strategic-merge
patches, owner-reference garbage collection, resourceVersion preconditions, field and label
selectors, protobuf rejection, fault injection. As strict as kube-apiserver on writes: strict JSON
(no NaN/Infinity), built-in objects decoded and validated against the pinned release's OpenAPI
schema and Go validation rules (400/422 like the real server, quantities stored canonical, empty
optional fields dropped, unknown fields per fieldValidation); ``--lenient`` turns that off. Nothing in it knows about ModelDeploy (an
import-linter contract keeps it so), so any kopf project's tests can use it.

    apiserver   the HTTP server (`python -m kubeemu.apiserver`) and `serve()` in-process
    process     ApiServerProcess: the emulator as a child process, plus stdlib-only object access
    childprocess  ChildProcess, the base of every child-process wrapper of a test bed (this one and
                the sandbox's operator, evaluator and Prometheus): log file, terminate/kill,
                wait for HTTP 200; free_port, atomic_write
    store       the object store: resourceVersions, watches, garbage collection
    admission   the write chain: decode, validate, admit (builtin_types, builtin_rules, fielderrors, quantity)
    decode      strict JSON request bodies
    patch, table, proto, selectors, discovery, faults   the pieces the server is built from

`kubeemu.process` imports only the stdlib and PyYAML: tests that just need a running emulator do
not load kmock or aiohttp.
"""
