"""TF Serving objects of one ModelDeployment (pure): per model version a ConfigMap, a Deployment and a
Service; and the Service clients call.

Each version runs in its own Deployment (`<name>-v<version>`, pods labelled app=<name>,
version=v<version>) behind its own Service (`<name>-v<version>`, the VirtualService's destination).
The Service `<name>`, the one clients call, selects the STABLE version only and moves on promotion:
clients the VirtualService does not route (no sidecar, an ingress gateway it is not bound to) get
the stable version and nothing else. Pods:
- run `tensorflow_model_server` with the rendered model/monitoring(/batching) config files;
- are ready only when the pinned model version is loaded (HTTP GET /v1/models/<m>/versions/<v>);
- request `nvidia.com/gpu` (and tolerate the nvidia.com/gpu NoSchedule taint) unless gpu.count is 0 or
  the GPU-shortage CPU fallback is on; a GPU model is selected (nodeSelector nvidia.com/gpu.product)
  only when gpu.product says so, and a shared GPU gets --per_process_gpu_memory_fraction;
- read the model from an emptyDir an init container (rclone) filled from s3:// (stock TF Serving >= 2.7
  has no S3 filesystem) or gs://, from gs:// directly, from a PVC mounted read-only, or from a path
  inside the image; object-store credentials come from a Secret, by reference only;
- with a pinned artifact digest (spec.model.digest, per version in status.modelDigests) do not start
  TF Serving until an init container has checked the version folder's digest: the copying init
  container checks its copy, a version read in place is checked in the TF Serving image itself;
- run as non-root with a read-only root filesystem and every capability dropped.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

from modeldeploy import names, quantity
from modeldeploy.plans import Target, VersionPlan
from modeldeploy.render import tfserving_config as tfc

GRPC_PORT = 8500
HTTP_PORT = 8501
PVC_MOUNT = "/models"
SYNC_MOUNT = "/models"  # the emptyDir the init container fills (never together with a PVC)
SYNC_VOLUME = "model-cache"
SYNC_CONTAINER = "model-sync"
DIGEST_CONTAINER = "model-digest"
ANNOTATION_MODEL_DIGEST = "modeldeploy.io/model-digest"
GCP_SECRET_MOUNT = "/var/secrets/google"
RUN_AS_USER = 1000

DEFAULT_REQUESTS = {"cpu": "1", "memory": "4Gi"}
DEFAULT_LIMITS = {"memory": "8Gi"}
CPU_FALLBACK_REQUESTS = {"cpu": "4", "memory": "8Gi"}
CPU_FALLBACK_LIMITS = {"memory": "12Gi"}


def _meta(target: Target, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": target.namespace,
        "labels": dict(sorted(labels.items())),
    }
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    owners = target.owner_references()
    if owners:
        meta["ownerReferences"] = owners
    return meta


def model_base_path(target: Target) -> str:
    """base_path as TF Serving inside the pod sees it."""
    model = target.spec.model
    if model.syncs:
        return SYNC_MOUNT
    if model.storage_scheme == "pvc":
        _, path = model.pvc_claim_and_path
        return f"{PVC_MOUNT}/{path}".rstrip("/") if path else PVC_MOUNT
    return model.base_path.rstrip("/")


def config_files(target: Target, plan: VersionPlan) -> dict[str, str]:
    """File name -> text of the TF Serving config files of one version."""
    spec = target.spec
    files = {
        tfc.MODEL_CONFIG_FILE: tfc.model_config(
            model_name=spec.model.name,
            base_path=model_base_path(target),
            version=plan.version,
            label=plan.role,
            deployment=names.deployment_name(target.name, plan.version),
        ),
        tfc.MONITORING_FILE: tfc.monitoring_config(),
    }
    if spec.serving.batching is not None:
        files[tfc.BATCHING_FILE] = tfc.batching_config(spec.serving.batching)
    return files


def configmap(target: Target, plan: VersionPlan) -> dict:
    labels = {
        **names.common_labels(target.name),
        names.LABEL_MODEL_VERSION: str(plan.version),
        names.LABEL_COMPONENT: "tfserving-config",
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, names.configmap_name(target.name, plan.version), labels),
        "data": config_files(target, plan),
    }


def _server_args(target: Target, cpu_fallback: bool = False) -> list[str]:
    args = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={HTTP_PORT}",
        f"--model_config_file={tfc.CONFIG_DIR}/{tfc.MODEL_CONFIG_FILE}",
        f"--monitoring_config_file={tfc.CONFIG_DIR}/{tfc.MONITORING_FILE}",
        # The role label ("stable"/"canary") names a version while it loads, and moves on promotion:
        # re-read the model config file so that a relabel needs no restart.
        "--allow_version_labels_for_unavailable_models=true",
        "--model_config_file_poll_wait_seconds=30",
    ]
    if target.spec.serving.batching is not None:
        args += ["--enable_batching=true", f"--batching_parameters_file={tfc.CONFIG_DIR}/{tfc.BATCHING_FILE}"]
    gpu = target.spec.serving.gpu
    if gpu.memory_fraction is not None and gpu.count >= 1 and not cpu_fallback:
        args.append(f"--per_process_gpu_memory_fraction={gpu.memory_fraction:g}")
    return args


def _sync_args(target: Target, version: int) -> list[str]:
    """`rclone copy` of one version from the object store into the emptyDir (on-the-fly remote, no config file)."""
    model = target.spec.model
    bucket_path = model.base_path.split("://", 1)[1].strip("/")
    args = ["copy"]
    if model.storage_scheme == "s3":
        s3 = model.s3
        args.append(f":s3:{bucket_path}/{int(version)}")
        args += ["--s3-provider=" + ("Other" if s3 is not None and s3.endpoint else "AWS"), "--s3-env-auth=true"]
        if s3 is not None and s3.region:
            args.append(f"--s3-region={s3.region}")
        if s3 is not None and s3.endpoint:
            args.append(f"--s3-endpoint={'https' if s3.use_https else 'http'}://{s3.endpoint}")
        if s3 is not None and not s3.verify_ssl:
            args.append("--no-check-certificate")
    else:
        args.append(f":gcs:{bucket_path}/{int(version)}")
        if model.credentials_secret:
            args.append(f"--gcs-service-account-file={GCP_SECRET_MOUNT}/key.json")
        else:  # Workload Identity / the node's service account
            args.append("--gcs-env-auth=true")
    args += [
        f"{SYNC_MOUNT}/{int(version)}",
        "--config=/tmp/rclone.conf",  # absent on purpose: everything is on the command line
        "--cache-dir=/tmp/rclone",
        "--retries=5",
        "--low-level-retries=10",
        "--transfers=8",
        "--stats=30s",
        "--stats-one-line",
        "--verbose",
    ]
    return args


def _security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def digest_script(folder: str, expected: str) -> str:
    """POSIX sh (BusyBox ash in the rclone image, dash/bash in tensorflow/serving) that computes the
    model digest of `folder` exactly as `xraymodel.digest` defines it and fails with a clear message on
    /dev/termination-log (the kubelet copies it into the pod status; the operator's PodsStalled says it)
    when it differs from `expected`:

        sha256 over the lines "<sha256 hex of the file>  <path relative to the folder>\\n" of every
        regular file below the folder, sorted by path (bytes, C locale) = `find | sort | sha256sum`.
    """
    q_folder, q_expected = shlex.quote(folder), shlex.quote(expected)
    return (
        "set -eu\n"
        f"dir={q_folder}; expected={q_expected}\n"
        'fail() { echo "$1" > "${TERMINATION_LOG:-/dev/termination-log}" 2>/dev/null || true; echo "$1" >&2; exit 1; }\n'
        'cd "$dir" 2>/dev/null || fail "model digest: version folder $dir is missing"\n'
        '[ -z "$(find . -type l | head -n 1)" ] || fail "model digest: $dir contains symbolic links (not allowed in a pinned version)"\n'
        '[ -n "$(find . -type f | head -n 1)" ] || fail "model digest: $dir has no files"\n'
        "actual=\"sha256:$(find . -type f | sed 's|^\\./||' | LC_ALL=C sort | "
        'while IFS= read -r f; do sha256sum "$f"; done | sha256sum | cut -d " " -f 1)"\n'
        '[ "$actual" = "$expected" ] || fail "ModelDigestMismatch: model version folder $dir has digest $actual, '
        'spec.model.digest pins $expected (the version was changed or overwritten after it was pinned)"\n'
        'echo "model digest ok: $dir is $actual"\n'
    )


def _version_folder(target: Target, version: int) -> str:
    return f"{model_base_path(target)}/{int(version)}"


def _digest_init_container(target: Target, plan: VersionPlan, image: str) -> dict:
    """Checks a version read in place (PVC, a path in the image) in the TF Serving image itself: it sees
    exactly the files TF Serving will load (the stock image is Ubuntu: sh, find, sort, sha256sum)."""
    _, _, mounts = _model_volumes(target)
    return {
        "name": DIGEST_CONTAINER,
        "image": image,
        "imagePullPolicy": target.spec.serving.image_pull_policy,
        "command": ["/bin/sh", "-c", digest_script(_version_folder(target, plan.version), plan.digest or "")],
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
        "securityContext": _security_context(),
    }


def _model_init_containers(target: Target, plan: VersionPlan, image: str) -> list[dict]:
    """The pod's init containers: the copy from the object store (verifying the copy when a digest is
    pinned: one container, copy then check), or, for versions read in place, the digest check alone."""
    if target.spec.model.syncs:
        return [_sync_init_container(target, plan)]
    if plan.digest:
        return [_digest_init_container(target, plan, image)]
    return []


def _sync_init_container(target: Target, plan: VersionPlan) -> dict:
    """The init container that copies the version into the emptyDir; a missing version fails it (the pod
    then never starts, like a version missing in the store). With a pinned digest it then checks the copy
    (the official rclone image is Alpine: BusyBox sh, find, sort, sha256sum)."""
    env, _, mounts = _storage(target)
    if plan.digest:
        copy = " ".join(shlex.quote(a) for a in ["rclone", *_sync_args(target, plan.version)])
        command = {
            "command": [
                "/bin/sh",
                "-c",
                f"{copy}\n" + digest_script(_version_folder(target, plan.version), plan.digest),
            ]
        }
    else:
        command = {"command": ["rclone"], "args": _sync_args(target, plan.version)}
    container = {
        "name": SYNC_CONTAINER,
        "image": target.spec.model.sync.image,
        "imagePullPolicy": target.spec.serving.image_pull_policy,
        **command,
        "env": [{"name": "HOME", "value": "/tmp"}, *(e for e in env if e["name"].startswith("AWS_"))],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [
            {"name": SYNC_VOLUME, "mountPath": SYNC_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
            *mounts,
        ],
        "securityContext": _security_context(),
    }
    return container


def _storage(target: Target) -> tuple[list[dict], list[dict], list[dict]]:
    """(env, volumes, volumeMounts) with the object store's settings and credentials, for whoever reads the
    store itself (TF Serving directly, the sync init container, the evaluator). Secrets by reference only."""
    model = target.spec.model
    env: list[dict] = []
    volumes: list[dict] = []
    mounts: list[dict] = []
    if model.storage_scheme == "s3":
        s3 = model.s3
        if s3 is not None:
            if s3.region:
                env.append({"name": "AWS_REGION", "value": s3.region})
            if s3.endpoint:
                env.append({"name": "S3_ENDPOINT", "value": s3.endpoint})
            env.append({"name": "S3_USE_HTTPS", "value": "1" if s3.use_https else "0"})
            env.append({"name": "S3_VERIFY_SSL", "value": "1" if s3.verify_ssl else "0"})
        if model.credentials_secret:
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": model.credentials_secret, "key": key}}})
    elif model.storage_scheme == "gs":
        if model.credentials_secret:
            volumes.append(
                {
                    "name": "gcp-credentials",
                    "secret": {
                        "secretName": model.credentials_secret,
                        "items": [{"key": "key.json", "path": "key.json"}],
                    },
                }
            )
            mounts.append({"name": "gcp-credentials", "mountPath": GCP_SECRET_MOUNT, "readOnly": True})
            env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCP_SECRET_MOUNT}/key.json"})
    elif model.storage_scheme == "pvc":
        claim, _ = model.pvc_claim_and_path
        volumes.append({"name": "model-store", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "model-store", "mountPath": PVC_MOUNT, "readOnly": True})
    return env, volumes, mounts


def _model_volumes(target: Target) -> tuple[list[dict], list[dict], list[dict]]:
    """(env, volumes, volumeMounts) of the TF Serving container for the model store."""
    if not target.spec.model.syncs:
        return _storage(target)
    _, volumes, _ = _storage(target)  # the init container's credential volumes
    cache: dict = {"name": SYNC_VOLUME, "emptyDir": {}}
    if target.spec.model.sync.size_limit is not None:
        cache["emptyDir"]["sizeLimit"] = quantity.canonical(target.spec.model.sync.size_limit)
    return [], [cache, *volumes], [{"name": SYNC_VOLUME, "mountPath": SYNC_MOUNT, "readOnly": True}]


def _resources(target: Target, cpu_fallback: bool) -> dict:
    """Requests and limits of the TF Serving container, never a request above its limit, in canonical form.

    The user's values are merged over the defaults; a user request above a DEFAULT limit raises that
    limit, a DEFAULT request above a user limit comes down to it (both set by the user and inconsistent
    is refused by validation). kube-apiserver refuses requests > limits (422), and stores quantities in
    canonical form ("0.5" -> "500m"), which is how they are rendered here so that they read back equal.
    """
    serving = target.spec.serving
    gpu = serving.gpu.count if not cpu_fallback else 0
    user_requests = {k: str(v) for k, v in serving.resources.requests.items()}
    user_limits = {k: str(v) for k, v in serving.resources.limits.items()}
    requests = {**(CPU_FALLBACK_REQUESTS if cpu_fallback else DEFAULT_REQUESTS), **user_requests}
    limits = {**(CPU_FALLBACK_LIMITS if cpu_fallback else DEFAULT_LIMITS), **user_limits}
    for resource in set(requests) & set(limits):
        if quantity.value(requests[resource]) > quantity.value(limits[resource]):
            if resource in user_limits and resource not in user_requests:
                requests[resource] = limits[resource]
            else:
                limits[resource] = requests[resource]
    if gpu > 0:
        limits["nvidia.com/gpu"] = str(gpu)
        requests["nvidia.com/gpu"] = str(gpu)
    else:
        limits.pop("nvidia.com/gpu", None)
        requests.pop("nvidia.com/gpu", None)
    return {
        "requests": {k: quantity.canonical(v) for k, v in sorted(requests.items())},
        "limits": {k: quantity.canonical(v) for k, v in sorted(limits.items())},
    }


def _placement(target: Target, cpu_fallback: bool) -> tuple[dict[str, str], list[dict]]:
    serving = target.spec.serving
    node_selector: dict[str, str] = {}
    tolerations: list[dict] = []
    if serving.gpu.count >= 1 and not cpu_fallback:
        # GKE taints GPU nodes nvidia.com/gpu=present:NoSchedule; harmless where nothing does.
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
        product = serving.gpu.effective_product
        if product:
            node_selector["nvidia.com/gpu.product"] = product
    if not cpu_fallback:
        node_selector.update(serving.node_selector)
    for tol in serving.tolerations:
        # Empty strings are what the server does not store (omitempty): rendering them would make the
        # live object differ from the desired one on every resync.
        tolerations.append({k: v for k, v in tol.model_dump(by_alias=True, exclude_none=True).items() if v != ""})
    return dict(sorted(node_selector.items())), tolerations


def _probes(target: Target, plan: VersionPlan, cpu_fallback: bool) -> dict:
    model = target.spec.model.name
    slow = cpu_fallback  # CPU pods load and answer slower: longer timeouts
    version_path = f"/v1/models/{model}/versions/{plan.version}"
    return {
        # Ready only while THIS model version is AVAILABLE (not a TCP probe). Not the status path: TF
        # Serving's GetModelStatus answers 200 for every state of a known version (LOADING, UNLOADING,
        # END...). GetModelMetadata needs a handle on the loaded servable, which only an AVAILABLE version
        # has; otherwise 404 "Servable not found for request: Specific(<model>, <version>)".
        "readinessProbe": {
            "httpGet": {"path": f"{version_path}/metadata", "port": HTTP_PORT},
            "periodSeconds": 5,
            "timeoutSeconds": 10 if slow else 3,
            "failureThreshold": 3,
        },
        # Loading a large SavedModel from object storage takes minutes: hold liveness off until loaded.
        # (The status path: TF Serving opens its ports after the initial load; a version unloaded later
        # must make the pod NotReady, never restart it.)
        "startupProbe": {
            "httpGet": {"path": version_path, "port": HTTP_PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 10 if slow else 3,
            "failureThreshold": 90 if slow else 60,
        },
        "livenessProbe": {
            "httpGet": {"path": f"/v1/models/{model}", "port": HTTP_PORT},
            "periodSeconds": 15,
            "timeoutSeconds": 15 if slow else 5,
            "failureThreshold": 4,
        },
    }


def config_hash(files: dict[str, str]) -> str:
    """Hash of the config files that need a restart to take effect (the model config is polled)."""
    restart_files = {k: v for k, v in files.items() if k != tfc.MODEL_CONFIG_FILE}
    return hashlib.sha256(json.dumps(restart_files, sort_keys=True).encode()).hexdigest()[:16]


def deployment(target: Target, plan: VersionPlan, variant: str = names.VARIANT_PRIMARY) -> dict:
    """One version's TF Serving Deployment: the primary (as specified), or its CPU fallback twin."""
    spec = target.spec
    serving = spec.serving
    cpu_fallback = variant == names.VARIANT_CPU_FALLBACK
    name = names.deployment_name(target.name, plan.version, variant)
    selector = names.selector_labels(target.name, plan.version, variant)
    labels = {
        **names.common_labels(target.name),
        **selector,
        names.LABEL_MODEL_VERSION: str(plan.version),
        names.LABEL_ROLE: plan.role,
        names.LABEL_COMPONENT: "tfserving",
    }
    # The pod template carries no role label: promotion must not restart the new stable's pods.
    pod_labels = {**serving.pod_labels, **{k: v for k, v in labels.items() if k != names.LABEL_ROLE}}
    pod_annotations = {
        **serving.pod_annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": tfc.METRICS_PATH,
        names.ANNOTATION_CONFIG_HASH: config_hash(config_files(target, plan)),
    }
    if plan.digest:
        pod_annotations[ANNOTATION_MODEL_DIGEST] = plan.digest
    env, volumes, mounts = _model_volumes(target)
    node_selector, tolerations = _placement(target, cpu_fallback)
    image = serving.cpu_image if (cpu_fallback or serving.gpu.count == 0) else serving.image
    container = {
        "name": "tfserving",
        "image": image,
        "imagePullPolicy": serving.image_pull_policy,
        "command": ["tensorflow_model_server"],
        "args": _server_args(target, cpu_fallback),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "resources": _resources(target, cpu_fallback),
        **_probes(target, plan, cpu_fallback),
        "volumeMounts": [
            {"name": "tfserving-config", "mountPath": tfc.CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *mounts,
        ],
        "securityContext": _security_context(),
    }
    if not env:
        del container["env"]
    pod_spec: dict = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [
            {"name": "tfserving-config", "configMap": {"name": names.configmap_name(target.name, plan.version)}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
    }
    init_containers = _model_init_containers(target, plan, image)
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if serving.service_account_name:
        pod_spec["serviceAccountName"] = serving.service_account_name
    deployment_spec: dict = {
        "replicas": plan.replicas,
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": max(60, int(spec.analysis.progress_deadline_seconds)),
    }
    if serving.min_ready_seconds:  # 0 is the server's default and is not stored: never render it (no write loop)
        deployment_spec["minReadySeconds"] = serving.min_ready_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(target, name, labels),
        "spec": {
            **deployment_spec,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": dict(sorted(pod_labels.items())),
                    "annotations": dict(sorted(pod_annotations.items())),
                },
                "spec": pod_spec,
            },
        },
    }


def _service(target: Target, name: str, version: int, labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(target, name, labels),
        "spec": {
            "selector": {"app": target.name, "version": names.version_label(version)},
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
            ],
        },
    }


def service(target: Target, stable: int) -> dict:
    """The Service clients call: the stable version's pods only (its selector moves on promotion)."""
    labels = {**names.common_labels(target.name), names.LABEL_COMPONENT: "tfserving", names.LABEL_ROLE: "stable"}
    return _service(target, names.service_name(target.name), stable, labels)


def version_service(target: Target, version: int) -> dict:
    """One version's Service (GPU pods and CPU-fallback twins alike): where the VirtualService routes."""
    labels = {**names.common_labels(target.name), names.LABEL_COMPONENT: "tfserving",
              names.LABEL_MODEL_VERSION: str(version)}  # fmt: skip
    return _service(target, names.version_service_name(target.name, version), version, labels)
