{{/* Chart name, at most 63 characters (a DNS label). */}}
{{- define "postern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name
when it already contains the chart name, else "<release>-<chart>".
*/}}
{{- define "postern.fullname" -}}
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

{{- define "postern.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object, without the component. */}}
{{- define "postern.commonLabels" -}}
helm.sh/chart: {{ include "postern.chart" . }}
app.kubernetes.io/name: {{ include "postern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "postern.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the controller's objects. */}}
{{- define "postern.labels" -}}
{{ include "postern.commonLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The pods' selector; never changes between upgrades. */}}
{{- define "postern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "postern.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "postern.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "postern.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "postern.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "postern.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{- define "postern.electionID" -}}
{{- default (printf "%s-leader" (include "postern.fullname" .)) .Values.electionID }}
{{- end }}

{{/* "namespace/name" of the Service published in Ingress status, or "". */}}
{{- define "postern.publishService" -}}
{{- if .Values.publishService.enabled }}
{{- if .Values.publishService.pathOverride }}
{{- .Values.publishService.pathOverride }}
{{- else if .Values.service.enabled }}
{{- printf "%s/%s" .Release.Namespace (include "postern.fullname" .) }}
{{- else }}
{{- fail "publishService.enabled needs service.enabled, or publishService.pathOverride naming another Service" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The port clients reach HTTPS on: what HTTP->HTTPS redirects point to. */}}
{{- define "postern.httpsPublicPort" -}}
{{- if .Values.hostPorts.enabled }}
{{- .Values.hostPorts.https }}
{{- else }}
{{- .Values.service.ports.https }}
{{- end }}
{{- end }}

{{- define "postern.metricsServiceEnabled" -}}
{{- if or .Values.metrics.service.enabled .Values.metrics.serviceMonitor.enabled }}true{{ end }}
{{- end }}

{{/*
Rules Postern needs in every namespace it watches: the informers list and
watch (they never get), the leader writes Ingress status and posts Events
(events.k8s.io: create, and patch when an Event repeats as a series).
*/}}
{{- define "postern.watchRules" -}}
- apiGroups: [""]
  resources: [services, secrets, configmaps]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [update]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.gatewayAPI.enabled }}
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways, httproutes, grpcroutes, referencegrants, backendtlspolicies]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways/status, httproutes/status, grpcroutes/status, backendtlspolicies/status]
  verbs: [update]
{{- end }}
{{- end }}
