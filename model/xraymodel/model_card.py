"""Model card sections (issue 16 item 8) and the human-readable rendering of model_card.json.

Every exported version (and every quantised variant) carries ``model_card.json`` (machine-readable,
schema xraymodel.model_card/v1) and ``model_card.md`` (rendered from the JSON with jinja2, so the two
never disagree). This module adds the sections a reader or a regulator asks for:

* ``data_provenance``: where the labels come from. ChestX-ray14 labels are text-mined from the
  radiology reports by NLP (NIH, Wang et al. 2017), not read by radiologists for this purpose; a
  data set written by xraymodel.synthetic carries a marker file and is reported as synthetic.
* ``preprocessing``: decode, windowing, resize and normalisation, as the serving graph does them.
* ``hashes``: SHA-256 of the weights (the float32 arrays in model.weights order) and of the code
  (every .py file of the xraymodel package), plus the git commit when known.
* ``synthetic_evaluation``: true when the metrics were measured on synthetic images.
* ``subgroups``: the evaluation's subgroup metrics when it has them, else an explicit placeholder.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np

SYNTHETIC_MARKER = "SYNTHETIC_DATA.json"  # written by xraymodel.synthetic into every data set it generates
MODEL_CARD_MARKDOWN = "model_card.md"

CHESTXRAY14_LABELS = (
    "NIH ChestX-ray14 finding labels are text-mined from the radiology reports by NLP (Wang et al., CVPR 2017, "
    "'ChestX-ray8'; the authors estimate > 90 % label accuracy), not read by radiologists for this purpose: "
    "expect label noise, and treat AUROC against them as agreement with the report text."
)
SYNTHETIC_LABELS = (
    "Synthetic images and labels from xraymodel.synthetic (planted per-finding patterns, ChestX-ray14 layout): "
    "no patient data; metrics on it measure the tool chain, not clinical performance."
)
SYNTHETIC_IMAGES_REAL_LABELS = (
    "Synthetic images (xraymodel.synthetic: planted per-finding patterns) drawn for REAL ChestX-ray14 label rows: "
    "whole real patients sampled from the NIH label file with their text-mined per-image findings, follow-ups, "
    "age, sex and view (prevalences and co-occurrences are the real ones; rare findings may be enriched and the "
    "Site column is synthetic, see {provenance}). No patient images: metrics on it measure the tool chain, "
    "not clinical performance."
)


def synthetic_facts(root: str | Path | None) -> dict | None:
    """What the generator recorded in the data set's marker file (None: not synthetic, or no root)."""
    if root is None or not (Path(root) / SYNTHETIC_MARKER).is_file():
        return None
    try:
        facts = json.loads((Path(root) / SYNTHETIC_MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def is_synthetic_root(root: str | Path | None) -> bool | None:
    """True/False for a data root (marker file present?), None when there is no root."""
    if root is None:
        return None
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def data_provenance(training_record: dict | None) -> dict | None:
    if training_record is None:
        return None
    data = training_record["data"]
    synthetic = is_synthetic_root(data.get("root"))
    facts = synthetic_facts(data.get("root")) or {}
    real_labels = str(facts.get("labels", "")).startswith("real ChestX-ray14")
    if not synthetic:
        labels, source = CHESTXRAY14_LABELS, "text-mined from radiology reports (NLP)"
    elif real_labels:
        labels = SYNTHETIC_IMAGES_REAL_LABELS.format(provenance=facts.get("provenance", "synthetic_provenance.json"))
        source = "real ChestX-ray14 label rows (text-mined), synthetic images"
    else:
        labels, source = SYNTHETIC_LABELS, "synthetic generator"
    return {
        "synthetic": synthetic,
        "labels": labels,
        "label_source": source,
        "split": data.get("split"),
        "split_unit": "patient (no patient in two splits)",
        "fingerprint": data.get("fingerprint"),
        "images": data.get("images"),
        "patients": data.get("patients"),
        "positives": data.get("positives"),
    }


def preprocessing_spec(input_size: int) -> dict:
    from xraymodel.pipeline import RESIZE_ANTIALIAS, RESIZE_METHOD

    return {
        "input": "PNG (8 or 16 bit), JPEG, or DICOM windowed and re-encoded as PNG by the client (dicom_input)",
        "decode": "format from the bytes: JPEG with scaled IDCT, 16-bit PNG windowed to 8-bit range, else 8-bit; "
        "grey replicated to 3 channels",
        "resize": {"size": [input_size, input_size], "method": RESIZE_METHOD, "antialias": RESIZE_ANTIALIAS,
                   "aspect_ratio": "not preserved (stretched to square)"},
        "normalisation": "keras.applications.resnet50.preprocess_input ('caffe': RGB->BGR, ImageNet mean "
        "subtracted, no scaling)",
        "in_graph": True,
    }


def weights_sha256(model) -> str:
    """SHA-256 of the weights' float32 bytes in model.weights order (independent of the file format)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def code_sha256() -> dict:
    """SHA-256 over the xraymodel package's .py files (relative path + bytes, sorted), and the git commit."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    commit = None
    try:
        out = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."],
                                   capture_output=True, text=True, timeout=5)
            commit += "-dirty" if dirty.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return {"xraymodel_sources_sha256": "sha256:" + digest.hexdigest(), "files": len(files), "git_commit": commit}


def subgroups_section(evaluation: dict | None) -> dict:
    found = (evaluation or {}).get("subgroups")
    if found:
        return {"status": "computed", **found} if isinstance(found, dict) else {"status": "computed", "groups": found}
    return {"status": "not computed", "note": "subgroup AUROC by sex, age band, view and site is filled in by "
            "`evaluate` when its report has 'subgroups' (issue 16 item 5)"}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (not _number(value) and not isinstance(value, str)):
        return "–"  # None, or a field the card does not have (jinja2 Undefined)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(interval, digits: int = 3) -> str:
    if not interval or len(interval) != 2 or not all(_number(v) for v in interval):
        return ""
    return f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


_TEMPLATE = """\
# Model card: {{ card.model_name }} {{ ("version " ~ card.version) if card.version is defined and card.version is not none else "(training run)" }}
{% if card.synthetic_evaluation %}
> **Synthetic evaluation.** The metrics below were measured on synthetic images: they show the tool
> chain works, not how the model performs on patients.
{% endif %}
{{ card.intended_use or "" }}

| | |
|---|---|
| created | {{ card.created or "–" }} |
| architecture | {{ card.architecture or "–" }} |
| head | {{ card.head }}, {{ card.labels | length }} findings |
| input | {{ card.input_size }} × {{ card.input_size }} px |
| parameters | {{ "{:,}".format(card.parameters) if card.parameters else "–" }} |
| weights | `{{ (card.hashes or {}).weights_sha256 or "–" }}` |
| code | `{{ ((card.hashes or {}).code or {}).xraymodel_sources_sha256 or "–" }}` (git {{ ((card.hashes or {}).code or {}).git_commit or "unknown" }}) |
| software | {% for k, v in (card.software or {}).items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %} |
{% if card.variant %}| variant | {{ card.variant.runtime }}; {{ card.variant.mode }}, cut {{ card.variant.cut }}, file {{ card.variant.file }} |
{% endif %}
## Data provenance
{% if card.data_provenance %}
{{ card.data_provenance.labels }}

Split by {{ card.data_provenance.split_unit }} ({{ card.data_provenance.split }}); fingerprint `{{ card.data_provenance.fingerprint }}`.

| split | images | patients |
|---|---|---|
{% for name, n in (card.data_provenance.images or {}).items() %}| {{ name }} | {{ n }} | {{ (card.data_provenance.patients or {})[name] }} |
{% endfor %}{% else %}
Not recorded.
{% endif %}
## Preprocessing (inside the serving graph)
{% for k, v in (card.preprocessing or {}).items() %}
- **{{ k }}**: {{ v if v is string else v | tojson }}{% endfor %}

## Metrics{% if card.metrics %} ({{ card.metrics.cases }} cases; {{ card.metrics.ci_method or "95 % CI" }})
{% if card.metrics.evaluation_set %}
Evaluation set: {{ card.metrics.evaluation_set.description if card.metrics.evaluation_set is mapping else card.metrics.evaluation_set }}
{% endif %}
Mean AUROC **{{ fmt(card.metrics.mean_auroc) }}**{{ ci(card.metrics.mean_auroc_ci) }}; mean ECE {{ fmt(card.metrics.mean_ece) }} uncalibrated, {{ fmt(card.metrics.mean_ece_calibrated) }} calibrated (as served).

| finding | AUROC [95 % CI] | sensitivity | specificity | ECE |
|---|---|---|---|---|
{% for name, m in card.metrics.per_label.items() %}| {{ name }} | {{ fmt((m.auroc or {}).estimate) }}{{ ci([(m.auroc or {}).ci_lower, (m.auroc or {}).ci_upper] if m.auroc else none) }} | {{ fmt(m.sensitivity) }} | {{ fmt(m.specificity) }} | {{ fmt(m.ece) }} |
{% endfor %}{% else %}

No evaluation was attached at export.
{% endif %}
## Subgroups

{% if card.subgroups and card.subgroups.status == "computed" %}```json
{{ card.subgroups | tojson(indent=2) }}
```{% else %}{{ (card.subgroups or {}).note or "Not computed." }}{% endif %}

## Calibration
{% if card.calibration %}
{{ card.calibration.method }}. Served output: {{ card.calibration.served_output }}.

| finding | slope | intercept | fitted on |
|---|---|---|---|
{% for name, c in card.calibration.per_label.items() %}| {{ name }} | {{ fmt(c.slope) }} | {{ fmt(c.intercept) }} | {{ c.fitted_on_cases }} |
{% endfor %}{% else %}
No calibrator.
{% endif %}
## Operating points ({{ card.operating_thresholds_scale or "model output" }} scale)

| finding | Youden threshold (validation) | target-sensitivity threshold | sensitivity [CI] | specificity [CI] |
|---|---|---|---|---|
{% for name in card.labels %}{% set p = (card.operating_points_target_sensitivity or {}).get(name) %}| {{ name }} | {{ fmt((card.operating_thresholds or {}).get(name), 4) }} | {{ fmt(p.threshold, 4) if p else "–" }} | {{ (fmt(p.sensitivity) ~ ci(p.sensitivity_ci)) if p else "–" }} | {{ (fmt(p.specificity) ~ ci(p.specificity_ci)) if p else "–" }} |
{% endfor %}
{% if card.variant and card.variant.quantization %}
## Quantisation

{% set q = card.variant.quantization %}Mean AUROC {{ fmt(q.mean_auroc) }} vs FP32 {{ fmt(q.fp32_mean_auroc) }}: Δ {{ fmt(q.mean_auroc_delta_vs_fp32, 4) }}{{ ci(q.mean_auroc_delta_vs_fp32_ci, 4) }} ({{ q.delta_ci_method }}), on {{ q.images }} images of {{ q.evaluation_patients }} patients; calibrated on {{ q.calibration_images }} images of {{ q.calibration_patients }} other patients ({{ q.shared_patients }} shared).
{% endif %}
"""


def render_markdown(card: dict) -> str:
    import jinja2

    environment = jinja2.Environment(autoescape=False, undefined=jinja2.ChainableUndefined)
    template = environment.from_string(_TEMPLATE)
    text = template.render(card=card, fmt=_fmt, ci=_ci)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def write_card(folder: Path, card: dict) -> None:
    """model_card.json and model_card.md side by side."""
    import json

    from xraymodel.export import MODEL_CARD_FILE

    (folder / MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (folder / MODEL_CARD_MARKDOWN).write_text(render_markdown(card))
