{{/* Chart name, at most 63 characters. */}}
{{- define "streamworker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources, at most 63 characters. */}}
{{- define "streamworker.fullname" -}}
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

{{- define "streamworker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the worker's resources. */}}
{{- define "streamworker.labels" -}}
{{ include "streamworker.commonLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{/* Labels of every resource, without app.kubernetes.io/component. */}}
{{- define "streamworker.commonLabels" -}}
helm.sh/chart: {{ include "streamworker.chart" . }}
app.kubernetes.io/name: {{ include "streamworker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamworker
{{- end }}

{{/* Labels that select the worker pods. */}}
{{- define "streamworker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamworker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{/* Labels that select the lag exporter's pod. */}}
{{- define "streamworker.lagExporterSelectorLabels" -}}
app.kubernetes.io/name: {{ include "streamworker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: lag-exporter
{{- end }}

{{- define "streamworker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamworker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "streamworker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Checks values that the schema cannot express; fails the render. */}}
{{- define "streamworker.validate" -}}
{{- if and .Values.keda.enabled .Values.autoscaling.enabled }}
{{- fail "keda.enabled and autoscaling.enabled are mutually exclusive: KEDA manages its own HPA; enable one of them" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetBacklogPerPod) }}
{{- fail "autoscaling.enabled needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetBacklogPerPod" }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail "keda.minReplicaCount must not exceed keda.maxReplicaCount" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- range $name, $t := .Values.tls }}
{{- if ne (empty $t.certKey) (empty $t.keyKey) }}
{{- fail (printf "tls.%s.certKey and tls.%s.keyKey must be set together" $name $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Seconds of a Go duration such as 30s, 1m30s, 1.5m or 500ms, rounded up.
*/}}
{{- define "streamworker.durationSeconds" -}}
{{- $units := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "µs" 0.000001 "ns" 0.000000001 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]*)?(h|ms|m|s|us|µs|ns)" (toString .) -1 }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]*)?" . }}
{{- $unit := trimPrefix $num . }}
{{- $total = addf $total (mulf (float64 $num) (get $units $unit)) }}
{{- end }}
{{- ceil $total | int }}
{{- end }}

{{/* Pod termination grace period: the worker's shutdown timeout plus a margin. */}}
{{- define "streamworker.terminationGracePeriodSeconds" -}}
{{- $timeout := "30s" }}
{{- with .Values.config.shutdown }}{{ with .timeout }}{{ $timeout = . }}{{ end }}{{ end }}
{{- add (include "streamworker.durationSeconds" $timeout | int) .Values.terminationGracePeriodExtraSeconds }}
{{- end }}

{{/* Port of config.http.addr (":9464" or "0.0.0.0:9464"). */}}
{{- define "streamworker.httpPort" -}}
{{- $addr := ":9464" }}
{{- with .Values.config.http }}{{ with .addr }}{{ $addr = . }}{{ end }}{{ end }}
{{- splitList ":" $addr | last | int }}
{{- end }}

{{- define "streamworker.tlsDir" -}}
/etc/streamworker/tls/{{ . }}
{{- end }}

{{/*
The configuration file: .Values.config with the TLS file paths of the
mounted tls.* Secrets filled in.
*/}}
{{- define "streamworker.configYAML" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- range $name := list "kafka" "redis" }}
{{- $t := get $.Values.tls $name }}
{{- if $t.existingSecret }}
{{- $dir := include "streamworker.tlsDir" $name }}
{{- $files := dict "enabled" true }}
{{- with $t.caKey }}{{ $_ := set $files "ca_file" (printf "%s/%s" $dir .) }}{{ end }}
{{- with $t.certKey }}{{ $_ := set $files "cert_file" (printf "%s/%s" $dir .) }}{{ end }}
{{- with $t.keyKey }}{{ $_ := set $files "key_file" (printf "%s/%s" $dir .) }}{{ end }}
{{- $cfg = mergeOverwrite $cfg (dict $name (dict "tls" $files)) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Environment of every streamworker container: passwords from Secrets. */}}
{{- define "streamworker.env" -}}
{{- with .Values.auth.kafka.existingSecret }}
- name: SW_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.auth.kafka.passwordKey }}
{{- end }}
{{- with .Values.auth.redis.existingSecret }}
- name: SW_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.auth.redis.passwordKey }}
{{- end }}
{{- end }}

{{/* Environment of the worker container. */}}
{{- define "streamworker.workerEnv" -}}
{{- include "streamworker.env" . }}
{{- with (.Values.resources.limits | default dict).memory }}
- name: GOMEMLIMIT
  value: {{ include "streamworker.goMemLimit" . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
GOMEMLIMIT for a memory limit (a Kubernetes quantity): 90% of it in MiB,
leaving headroom for what the Go heap limit does not count (goroutine
stacks, the runtime's own memory, buffers outside the heap).
*/}}
{{- define "streamworker.goMemLimit" -}}
{{- $q := toString . }}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 }}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $unit := trimPrefix $m $q }}
{{- if or (not $m) (not (hasKey $units $unit)) }}
{{- fail (printf "resources.limits.memory %q: use a number with one of the suffixes Ki, Mi, Gi, Ti, k, M, G, T (the chart sets GOMEMLIMIT to 90%% of it)" $q) }}
{{- end }}
{{- $mib := div (int64 (mulf (float64 $m) (get $units $unit) 0.9)) 1048576 }}
{{- if lt $mib 1 }}
{{- fail (printf "resources.limits.memory %q is below 2Mi" $q) }}
{{- end }}
{{- printf "%dMiB" $mib }}
{{- end }}

{{/* Environment of the topics Job's container. */}}
{{- define "streamworker.jobEnv" -}}
{{- include "streamworker.env" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes of every streamworker pod; $cm is the ConfigMap's name. */}}
{{- define "streamworker.volumes" -}}
{{- $ := index . 0 }}
{{- $cm := index . 1 }}
- name: config
  configMap:
    name: {{ $cm }}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- range $name := list "kafka" "redis" }}
{{- with (get $.Values.tls $name).existingSecret }}
- name: tls-{{ $name }}
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}

{{- define "streamworker.volumeMounts" -}}
- name: config
  mountPath: /etc/streamworker/config.yaml
  subPath: config.yaml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- range $name := list "kafka" "redis" }}
{{- if (get $.Values.tls $name).existingSecret }}
- name: tls-{{ $name }}
  mountPath: {{ include "streamworker.tlsDir" $name }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
