"""
The semantic validation kube-apiserver runs on objects after decoding them (422 Invalid).

A port of the rules of k8s.io/kubernetes pkg/apis/core/validation, apps/validation and
apimachinery's ObjectMeta/LabelSelector validation that matter for workloads, services and
configuration, with the real field paths and messages:

- every object's metadata (also a custom resource's): label keys and values (<= 63 characters, the
  label alphabet), annotation keys and total size, finalizers, owner references (one controller);
- names per resource: RFC 1123 subdomains for most, RFC 1123 labels for Namespaces, RFC 1035 labels
  for Services (the "name" of a pod template's labels is not a name);
- pod specs (in Pods and in every template): container names, images, ports, env names, volume
  mounts naming a volume, tolerations, nodeSelector labels, and resources: every request <= its
  limit, extended resources (``nvidia.com/gpu``) integral with requests equal to limits;
- Deployments: a selector that matches the template's labels; Services: ports and their names;
  ConfigMaps/Secrets: key names and the 1 MiB size limit; label selectors anywhere.

Each rule returns :class:`kubeemu.fielderrors.FieldError` s; the caller answers them as one 422.
"""

from collections.abc import Callable
from typing import Any

from kubeemu import fielderrors as fe
from kubeemu.builtin_types import Decoded
from kubeemu.quantity import QuantityError, parse

Obj = dict[str, Any]
Errors = list[fe.FieldError]
_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_POD_SPEC = "io.k8s.api.core.v1.PodSpec"
_SELECTOR = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
_TOTAL_ANNOTATION_SIZE = 256 * 1024
_CONFIG_MAP_SIZE = 1024 * 1024
_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
_TOLERATION_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- metadata ---------------------------------------------------------------------------------------


def validate_labels(labels: Any, path: str) -> Errors:
    errors: Errors = []
    for key, value in (labels or {}).items():
        errors += [fe.invalid(path, key, msg) for msg in fe.qualified_name(key)]
        errors += [fe.invalid(path, value, msg) for msg in fe.label_value(value if isinstance(value, str) else "")]
    return errors


def validate_object_meta(meta: Obj, path: str, *, name_rule: Callable[[str], list[str]] | None) -> Errors:
    """ValidateObjectMeta: the name (root metadata only), labels, annotations, finalizers, owners."""
    errors: Errors = []
    name = meta.get("name")
    if name_rule is not None and name:
        errors += [fe.invalid(_child(path, "name"), name, msg) for msg in name_rule(name)]
    errors += validate_labels(meta.get("labels"), _child(path, "labels"))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        errors += [fe.invalid(_child(path, "annotations"), key, msg) for msg in fe.qualified_name(key.lower())]
    size = sum(len(k) + len(v if isinstance(v, str) else "") for k, v in annotations.items())
    if size > _TOTAL_ANNOTATION_SIZE:
        errors.append(
            fe.FieldError(
                "TooLong", _child(path, "annotations"), "", f"must have at most {_TOTAL_ANNOTATION_SIZE} bytes"
            )
        )
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        errors += [fe.invalid(f"{path}.finalizers[{i}]", finalizer, m) for m in fe.qualified_name(finalizer or "")]
    controllers = []
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        where = f"{path}.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errors.append(
                    fe.required(
                        f"{where}.{key}", f"{key} must not be empty" if key != "uid" else "uid must not be empty"
                    )
                )
        if ref.get("controller"):
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        errors.append(
            fe.invalid(
                _child(path, "ownerReferences"),
                meta.get("ownerReferences"),
                'Only one reference can have Controller set to true. Found "true" in references for '
                + " and ".join(controllers),
            )
        )
    return errors


def validate_label_selector(selector: Obj, path: str) -> Errors:
    errors = validate_labels(selector.get("matchLabels"), _child(path, "matchLabels"))
    for i, requirement in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        operator, values = requirement.get("operator"), requirement.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                errors.append(fe.required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errors.append(
                    fe.forbidden(
                        f"{where}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    )
                )
        else:
            errors.append(fe.invalid(f"{where}.operator", operator, "not a valid selector operator"))
        errors += [
            fe.invalid(f"{where}.key", requirement.get("key"), m)
            for m in fe.qualified_name(requirement.get("key") or "")
        ]
    return errors


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Does a LabelSelector select an object with these labels?"""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False  # an empty selector is invalid for workloads (and matches nothing here)
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator, values = requirement.get("key"), requirement.get("operator"), requirement.get("values") or []
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# --- pods -------------------------------------------------------------------------------------------


def _is_extended(resource: str) -> bool:
    """Extended resources (``nvidia.com/gpu``): fully qualified, not in the kubernetes.io domain."""
    if "/" not in resource:
        return False
    domain = resource.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def _overcommit_allowed(resource: str) -> bool:
    return not _is_extended(resource) and not resource.startswith("hugepages-")


def _quantities(values: Any, path: str, errors: Errors) -> dict[str, Any]:
    parsed = {}
    for resource, text in (values or {}).items():
        where = _child(path, resource)
        if "/" in resource:
            errors += [fe.invalid(where, resource, m) for m in fe.qualified_name(resource)]
        elif resource not in _STANDARD_CONTAINER_RESOURCES and not resource.startswith("hugepages-"):
            errors.append(fe.invalid(where, resource, "must be a standard resource for containers"))
        try:
            value, _ = parse(text)
        except QuantityError as e:
            errors.append(fe.invalid(where, text, str(e)))
            continue
        if value < 0:
            errors.append(fe.invalid(where, text, "must be greater than or equal to 0"))
        elif _is_extended(resource) and value.denominator != 1:
            errors.append(fe.invalid(where, text, "must be an integer"))
        parsed[resource] = (value, text)
    return parsed


def validate_resources(resources: Obj, path: str) -> Errors:
    """ValidateResourceRequirements: requests <= limits; extended resources need equal limits."""
    errors: Errors = []
    limits = _quantities(resources.get("limits"), _child(path, "limits"), errors)
    requests = _quantities(resources.get("requests"), _child(path, "requests"), errors)
    request_path = _child(path, "requests")
    for resource, (value, text) in requests.items():
        if resource in limits:
            limit, limit_text = limits[resource]
            if not _overcommit_allowed(resource) and value != limit:
                errors.append(fe.invalid(request_path, text, f"must be equal to {resource} limit of {limit_text}"))
            elif value > limit:
                errors.append(
                    fe.invalid(request_path, text, f"must be less than or equal to {resource} limit of {limit_text}")
                )
        elif not _overcommit_allowed(resource):
            errors.append(fe.required(_child(path, "limits"), "Limit must be set for non overcommitable resources"))
    return errors


def _validate_port(port: Any, path: str) -> Errors:
    if isinstance(port, int) and not isinstance(port, bool):
        return [] if 1 <= port <= 65535 else [fe.invalid(path, port, "must be between 1 and 65535, inclusive")]
    if isinstance(port, str):
        return [fe.invalid(path, port, m) for m in fe.iana_svc_name(port)]
    return [fe.required(path)]


def _validate_probe(probe: Obj | None, path: str) -> Errors:
    if not probe:
        return []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        return [fe.required(path, "must specify a handler type")]
    if len(handlers) > 1:
        return [fe.forbidden(_child(path, handlers[1]), "may not specify more than 1 handler type")]
    handler = probe[handlers[0]]
    if handlers[0] in ("httpGet", "tcpSocket"):
        return _validate_port(handler.get("port"), f"{path}.{handlers[0]}.port")
    return []


def _validate_container(container: Obj, path: str, volumes: set[str]) -> Errors:
    errors: Errors = []
    name = container.get("name") or ""
    if not name:
        errors.append(fe.required(_child(path, "name")))
    else:
        errors += [fe.invalid(_child(path, "name"), name, m) for m in fe.dns1123_label(name)]
    if not (container.get("image") or "").strip():
        errors.append(fe.required(_child(path, "image")))
    port_names: set[str] = set()
    for i, port in enumerate(container.get("ports") or []):
        where = f"{path}.ports[{i}]"
        errors += _validate_port(port.get("containerPort"), f"{where}.containerPort")
        if port.get("name"):
            errors += [fe.invalid(f"{where}.name", port["name"], m) for m in fe.iana_svc_name(port["name"])]
            if port["name"] in port_names:
                errors.append(fe.duplicate(f"{where}.name", port["name"]))
            port_names.add(port["name"])
        if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            errors.append(fe.not_supported(f"{where}.protocol", port.get("protocol"), ["SCTP", "TCP", "UDP"]))
    for i, env in enumerate(container.get("env") or []):
        env_name = env.get("name") or ""
        if not env_name:
            errors.append(fe.required(f"{path}.env[{i}].name"))
        else:
            errors += [fe.invalid(f"{path}.env[{i}].name", env_name, m) for m in fe.env_var_name(env_name)]
    for i, mount in enumerate(container.get("volumeMounts") or []):
        where = f"{path}.volumeMounts[{i}]"
        if not mount.get("name"):
            errors.append(fe.required(f"{where}.name"))
        elif mount["name"] not in volumes:
            errors.append(fe.not_found(f"{where}.name", mount["name"]))
        if not mount.get("mountPath"):
            errors.append(fe.required(f"{where}.mountPath"))
    errors += validate_resources(container.get("resources") or {}, _child(path, "resources"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        errors += _validate_probe(container.get(probe), _child(path, probe))
    return errors


def validate_tolerations(tolerations: list[Obj], path: str) -> Errors:
    errors: Errors = []
    for i, toleration in enumerate(tolerations):
        where = f"{path}[{i}]"
        key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
        value, effect = toleration.get("value") or "", toleration.get("effect") or ""
        if key:
            errors += [fe.invalid(f"{where}.key", key, m) for m in fe.qualified_name(key)]
        elif operator != "Exists":
            errors.append(
                fe.invalid(
                    f"{where}.operator",
                    toleration.get("operator") or "",
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errors.append(
                fe.invalid(f"{where}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
            )
        if operator == "Equal":
            errors += [fe.invalid(f"{where}.operator", value, m) for m in fe.label_value(value)]
        elif operator == "Exists":
            if value:
                errors.append(
                    fe.invalid(f"{where}.operator", toleration, "value must be empty when `operator` is 'Exists'")
                )
        else:
            errors.append(fe.not_supported(f"{where}.operator", operator, ["Equal", "Exists"]))
        if effect and effect not in _TOLERATION_EFFECTS:
            errors.append(fe.not_supported(f"{where}.effect", effect, _TOLERATION_EFFECTS))
    return errors


def validate_pod_spec(spec: Obj, path: str, *, restart_policies: list[str] | None = None) -> Errors:
    errors: Errors = []
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name") or ""
        where = f"{path}.volumes[{i}].name"
        if not name:
            errors.append(fe.required(where))
            continue
        errors += [fe.invalid(where, name, m) for m in fe.dns1123_label(name)]
        if name in volumes:
            errors.append(fe.duplicate(where, name))
        volumes.add(name)
    containers = spec.get("containers") or []
    if not containers:
        errors.append(fe.required(_child(path, "containers")))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            where = f"{path}.{group}[{i}]"
            errors += _validate_container(container, where, volumes)
            name = container.get("name")
            if name and name in seen:
                errors.append(fe.duplicate(f"{where}.name", name))
            seen.add(name)
    errors += validate_tolerations(spec.get("tolerations") or [], _child(path, "tolerations"))
    errors += validate_labels(spec.get("nodeSelector"), _child(path, "nodeSelector"))
    policy = spec.get("restartPolicy")
    allowed = restart_policies or ["Always", "OnFailure", "Never"]
    if policy is not None and policy not in allowed:
        errors.append(fe.not_supported(_child(path, "restartPolicy"), policy, allowed))
    return errors


# --- kinds ------------------------------------------------------------------------------------------


def _validate_deployment(obj: Obj) -> Errors:
    errors: Errors = []
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        errors.append(fe.required("spec.selector"))
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errors.append(fe.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    elif not selector_matches(selector, template_labels):
        errors.append(
            fe.invalid(
                "spec.template.metadata.labels",
                template_labels,
                "`selector` does not match template `labels`",
            )
        )
    if (spec.get("replicas") or 0) < 0:
        errors.append(fe.invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0"))
    min_ready = spec.get("minReadySeconds") or 0
    if min_ready < 0:
        errors.append(fe.invalid("spec.minReadySeconds", min_ready, "must be greater than or equal to 0"))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None and deadline <= min_ready:  # apps validation: ValidateDeploymentSpec
        errors.append(fe.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    strategy = (spec.get("strategy") or {}).get("type")
    if strategy is not None and strategy not in ("Recreate", "RollingUpdate"):
        errors.append(fe.not_supported("spec.strategy.type", strategy, ["Recreate", "RollingUpdate"]))
    if "template" not in spec:
        errors.append(fe.required("spec.template"))
    return errors


def _validate_service(obj: Obj) -> Errors:
    errors: Errors = []
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if kind not in types:
        errors.append(fe.not_supported("spec.type", kind, types))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        errors.append(fe.required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        where = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errors.append(fe.required(f"{where}.name"))
        elif name:
            errors += [fe.invalid(f"{where}.name", name, m) for m in fe.dns1123_label(name)]
            if name in names:
                errors.append(fe.duplicate(f"{where}.name", name))
            names.add(name)
        errors += _validate_port(port.get("port"), f"{where}.port")
        if "targetPort" in port:
            errors += _validate_port(port["targetPort"], f"{where}.targetPort")
        if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            errors.append(fe.not_supported(f"{where}.protocol", port.get("protocol"), ["SCTP", "TCP", "UDP"]))
    errors += validate_labels(spec.get("selector"), "spec.selector")
    return errors


def _validate_config_data(obj: Obj) -> Errors:
    errors: Errors = []
    size = 0
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    for where, values in (("data", data), ("binaryData", binary)):
        for key, value in values.items():
            errors += [fe.invalid(where, key, m) for m in fe.config_map_key(key)]
            size += len(value or "")
    for key in set(data) & set(binary):
        errors.append(fe.invalid("data", key, "duplicate of key present in binaryData"))
    if obj.get("kind") == "ConfigMap" and size > _CONFIG_MAP_SIZE:
        errors.append(fe.FieldError("TooLong", "", "", f"must have at most {_CONFIG_MAP_SIZE} bytes"))
    return errors


_KIND_RULES: dict[tuple[str, str], Callable[[Obj], Errors]] = {
    ("apps", "Deployment"): _validate_deployment,
    ("", "Service"): _validate_service,
    ("", "ConfigMap"): _validate_config_data,
    ("", "Secret"): _validate_config_data,
}
_TEMPLATE_RESTART = {("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet")}
_NAME_RULES: dict[tuple[str, str], Callable[[str], list[str]]] = {
    ("", "Namespace"): fe.dns1123_label,
    ("", "Service"): fe.dns1035_label,
}


def name_rule(group: str, kind: str) -> Callable[[str], list[str]] | None:
    """How kube-apiserver validates metadata.name of a kind (RBAC names only need to be path segments)."""
    if group == "rbac.authorization.k8s.io":
        return None
    return _NAME_RULES.get((group, kind), fe.dns1123_subdomain)


def validate(group: str, kind: str, decoded: Decoded) -> Errors:
    """Every semantic error of a decoded built-in object."""
    obj = decoded.obj
    errors = validate_object_meta(obj.get("metadata") or {}, "metadata", name_rule=name_rule(group, kind))
    for path, meta in decoded.at(_META):
        if path != "metadata":
            errors += validate_object_meta(meta, path, name_rule=None)
    for path, selector in decoded.at(_SELECTOR):
        errors += validate_label_selector(selector, path)
    restart = ["Always"] if (group, kind) in _TEMPLATE_RESTART else None
    for path, spec in decoded.at(_POD_SPEC):
        errors += validate_pod_spec(spec, path, restart_policies=restart)
    rule = _KIND_RULES.get((group, kind))
    if rule is not None:
        errors += rule(obj)
    return errors
