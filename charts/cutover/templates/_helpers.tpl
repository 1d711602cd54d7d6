{{- define "cutover.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cutover.fullname" -}}
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

{{- define "cutover.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cutover.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* helm.sh/chart and managed-by are the only labels the kustomize base does not carry. */}}
{{- define "cutover.labels" -}}
{{ include "cutover.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cutover.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cutover.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cutover.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{- define "cutover.leaseName" -}}
{{- default (include "cutover.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The one namespace watched, or "" for all (rbac.namespaced defaults it to the release's). */}}
{{- define "cutover.watchNamespace" -}}
{{- if .Values.watchNamespaces }}{{ first .Values.watchNamespaces }}
{{- else if .Values.rbac.namespaced }}{{ .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Exactly the API calls the controller makes in the namespaces it watches (docs/operations.md,
"RBAC", says why each is needed). Shared by the ClusterRole and the namespaced Role.
*/}}
{{- define "cutover.rules" -}}
- apiGroups: [cutover.dev]
  resources: [upgradeplans]
  verbs: [get, list, watch, patch, update]
- apiGroups: [cutover.dev]
  resources: [upgradeplans/status]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Start-up check that the CRD is installed: one named object, read only. */}}
{{- define "cutover.crdRule" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames: [upgradeplans.cutover.dev]
  verbs: [get]
{{- end }}
