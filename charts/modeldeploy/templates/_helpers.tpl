{{/* Names, labels and images shared by every template. */}}

{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modeldeploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ include "modeldeploy.chart" . }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modeldeploy.metricsServiceName" -}}
{{- printf "%s-metrics" (include "modeldeploy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to the chart's appVersion. */}}
{{- define "modeldeploy.imageRef" -}}
{{- $tag := default .appVersion .image.tag -}}
{{- .image.repository -}}
{{- if $tag }}:{{ $tag }}{{ end -}}
{{- if .image.digest }}@{{ .image.digest }}{{ end -}}
{{- end }}

{{- define "modeldeploy.image" -}}
{{- include "modeldeploy.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "modeldeploy.evaluatorImage" -}}
{{- include "modeldeploy.imageRef" (dict "image" .Values.evaluator.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "modeldeploy.clusterwide" -}}
{{- if .Values.watchNamespaces }}false{{ else }}true{{ end }}
{{- end }}

{{- define "modeldeploy.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ else }}false{{ end }}
{{- end }}

{{- define "modeldeploy.peeringName" -}}
{{- default (include "modeldeploy.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The web dashboard (webDashboard.*): names, labels, image. */}}
{{- define "modeldeploy.webDashboard.fullname" -}}
{{- printf "%s-dashboard" (include "modeldeploy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modeldeploy.webDashboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dashboard
{{- end }}

{{- define "modeldeploy.webDashboard.labels" -}}
helm.sh/chart: {{ include "modeldeploy.chart" . }}
{{ include "modeldeploy.webDashboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "modeldeploy.webDashboard.serviceAccountName" -}}
{{- if .Values.webDashboard.serviceAccount.create }}
{{- default (include "modeldeploy.webDashboard.fullname" .) .Values.webDashboard.serviceAccount.name }}
{{- else }}
{{- required "webDashboard.serviceAccount.name is required when webDashboard.serviceAccount.create is false" .Values.webDashboard.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modeldeploy.webDashboard.image" -}}
{{- include "modeldeploy.imageRef" (dict "image" .Values.webDashboard.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* The dashboard's permissions (mddashboard: list+watch ModelDeployments; patch only for actions). */}}
{{- define "modeldeploy.webDashboard.rules" -}}
# Read-only: one LIST, then one WATCH of ModelDeployments (mddashboard/watch.py).
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [list, watch]
{{- if .Values.webDashboard.allowActions }}
# --allow-actions: the buttons set modeldeploy.io/action(-by) with one merge patch (modeldeploy.actions).
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [patch]
{{- end }}
{{- end }}

{{- /* CEL list of the user names that may ask for a manual action on someone else's behalf (admission-policy.yaml). */ -}}
{{- define "modeldeploy.actionProxies" -}}
{{- $names := list }}
{{- range .Values.actionIdentity.trustedProxies }}{{- $names = append $names (printf "'%s'" .) }}{{- end }}
{{- if and .Values.webDashboard.enabled .Values.webDashboard.allowActions }}
{{- $names = append $names (printf "'system:serviceaccount:%s:%s'" .Release.Namespace (include "modeldeploy.webDashboard.serviceAccountName" .)) }}
{{- end }}
{{- printf "[%s]" (join ", " $names) }}
{{- end }}
