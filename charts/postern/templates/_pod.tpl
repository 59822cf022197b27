{{/* The command line: every setting the chart makes is a flag, visible in `kubectl describe pod`. */}}
{{- define "postern.args" -}}
- --ingress-class={{ .Values.ingressClass.name }}
- --controller-class={{ .Values.ingressClass.controller }}
{{- if .Values.gatewayAPI.enabled }}
- --gateway-controller-name={{ .Values.gatewayAPI.controllerName }}
{{- else }}
- --watch-gateway-api=false
{{- end }}
- --election-id={{ include "postern.electionID" . }}
- --http-addr=:{{ .Values.containerPorts.http }}
- --https-addr=:{{ .Values.containerPorts.https }}
- --metrics-addr=:{{ .Values.containerPorts.metrics }}
{{- with .Values.watchNamespaces }}
- --watch-namespace={{ join "," . }}
{{- end }}
{{- with include "postern.publishService" . }}
- --publish-service={{ . }}
{{- end }}
{{- if and (not .Values.publishService.enabled) .Values.publishStatusAddress }}
- --publish-status-address={{ join "," .Values.publishStatusAddress }}
{{- end }}
{{- with .Values.defaultSSLCertificate }}
- --default-ssl-certificate={{ . }}
{{- end }}
{{- $httpsPort := include "postern.httpsPublicPort" . | int }}
{{- if ne $httpsPort 443 }}
- --https-redirect-port={{ $httpsPort }}
{{- end }}
{{- if .Values.acme.enabled }}
- --acme-directory={{ .Values.acme.directory }}
{{- with .Values.acme.email }}
- --acme-email={{ . }}
{{- end }}
{{- if .Values.acme.caBundle.configMap }}
- --acme-ca-bundle=/etc/postern/acme-ca/{{ .Values.acme.caBundle.key }}
{{- end }}
{{- else }}
{{- /* Postern's own default is Let's Encrypt; without the chart's ACME
       RBAC its cache Secrets would be forbidden, so turn ACME off. */}}
- --acme-directory=
{{- end }}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
- --shutdown-grace={{ .Values.shutdownGraceSeconds }}s
{{- if not .Values.accessLog.enabled }}
- --access-log=false
{{- end }}
{{- if not (kindIs "invalid" .Values.accessLog.sample) }}
- --access-log-sample={{ .Values.accessLog.sample }}
{{- end }}
{{- if .Values.enablePprof }}
- --enable-pprof
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod template of the Deployment or DaemonSet. */}}
{{- define "postern.podTemplate" -}}
{{- $minGrace := add .Values.preStopSleepSeconds .Values.shutdownGraceSeconds }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $minGrace) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least preStopSleepSeconds + shutdownGraceSeconds (%v), or Kubernetes kills Postern mid-drain" .Values.terminationGracePeriodSeconds $minGrace) }}
{{- end -}}
metadata:
  labels:
    {{- /* No chart version here: upgrading only the chart should not restart Postern. */}}
    {{- include "postern.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/version: {{ include "postern.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "postern.serviceAccountName" . }}
  automountServiceAccountToken: true
  # Postern reads no Service environment variables; in a namespace of many
  # Services they only slow the pod's start.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: postern
      image: {{ include "postern.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "postern.args" . | nindent 8 }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPorts.http }}
          protocol: TCP
          {{- if .Values.hostPorts.enabled }}
          hostPort: {{ .Values.hostPorts.http }}
          {{- end }}
        - name: https
          containerPort: {{ .Values.containerPorts.https }}
          protocol: TCP
          {{- if .Values.hostPorts.enabled }}
          hostPort: {{ .Values.hostPorts.https }}
          {{- end }}
        - name: metrics
          containerPort: {{ .Values.containerPorts.metrics }}
          protocol: TCP
      {{- if .Values.livenessProbe.enabled }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
        timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
        failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
      {{- end }}
      {{- if .Values.readinessProbe.enabled }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
        timeoutSeconds: {{ .Values.readinessProbe.timeoutSeconds }}
        failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
      {{- end }}
      {{- if gt (int .Values.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or (and .Values.acme.enabled .Values.acme.caBundle.configMap) .Values.extraVolumeMounts }}
      volumeMounts:
        {{- if and .Values.acme.enabled .Values.acme.caBundle.configMap }}
        - name: acme-ca
          mountPath: /etc/postern/acme-ca
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
  {{- if or (and .Values.acme.enabled .Values.acme.caBundle.configMap) .Values.extraVolumes }}
  volumes:
    {{- if and .Values.acme.enabled .Values.acme.caBundle.configMap }}
    - name: acme-ca
      configMap:
        name: {{ .Values.acme.caBundle.configMap }}
        items:
          - key: {{ .Values.acme.caBundle.key }}
            path: {{ .Values.acme.caBundle.key }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- if and (eq .Values.kind "Deployment") .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- $selector := dict "matchLabels" (include "postern.selectorLabels" . | fromYaml) }}
    {{- range .Values.topologySpreadConstraints }}
    - {{ toYaml (merge (deepCopy .) (dict "labelSelector" $selector)) | indent 6 | trim }}
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
