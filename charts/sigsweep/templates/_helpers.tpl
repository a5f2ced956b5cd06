{{/* vim: set filetype=mustache: */}}

{{- define "sigsweep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fullname, truncated so that "<fullname>-coordinator-<hash>-<hash>" and
"<fullname>-etcd-headless" stay valid DNS names.
*/}}
{{- define "sigsweep.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sigsweep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "sigsweep.labels" -}}
helm.sh/chart: {{ include "sigsweep.chart" . }}
{{ include "sigsweep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sigsweep
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sigsweep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigsweep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Component labels: include "sigsweep.componentLabels" (dict "ctx" $ "component" "coordinator") */}}
{{- define "sigsweep.componentLabels" -}}
{{ include "sigsweep.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sigsweep.componentSelectorLabels" -}}
{{ include "sigsweep.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sigsweep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sigsweep.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: include "sigsweep.imageRef" (dict "repository" r "tag" t "digest" d) */}}
{{- define "sigsweep.imageRef" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{- define "sigsweep.image" -}}
{{- include "sigsweep.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest) -}}
{{- end -}}

{{- define "sigsweep.workerImage" -}}
{{- $repo := default .Values.image.repository .Values.worker.image.repository -}}
{{- $base := default .Chart.AppVersion .Values.image.tag -}}
{{- $defTag := ternary (printf "%s-cuda" $base) $base (eq .Values.worker.backend "cuda") -}}
{{- include "sigsweep.imageRef" (dict "repository" $repo "tag" (default $defTag .Values.worker.image.tag) "digest" .Values.worker.image.digest) -}}
{{- end -}}

{{- define "sigsweep.etcdImage" -}}
{{- include "sigsweep.imageRef" (dict "repository" .Values.etcd.image.repository "tag" .Values.etcd.image.tag "digest" .Values.etcd.image.digest) -}}
{{- end -}}

{{- define "sigsweep.coordinatorName" -}}
{{- printf "%s-coordinator" (include "sigsweep.fullname" .) -}}
{{- end -}}

{{- define "sigsweep.etcdName" -}}
{{- printf "%s-etcd" (include "sigsweep.fullname" .) -}}
{{- end -}}

{{- define "sigsweep.workerName" -}}
{{- printf "%s-worker" (include "sigsweep.fullname" .) -}}
{{- end -}}

{{/* In-cluster URL of the coordinator gRPC port. */}}
{{- define "sigsweep.coordinatorURL" -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled -}}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "sigsweep.coordinatorName" .) .Release.Namespace (int .Values.coordinator.ports.grpc) -}}
{{- end -}}

{{/* SIGSWEEP_STORE */}}
{{- define "sigsweep.storeURL" -}}
{{- if eq .Values.store.type "embedded" -}}
embedded:/var/lib/sigsweep
{{- else if eq .Values.store.type "external" -}}
{{- printf "etcd://%s" (join "," .Values.externalEtcd.endpoints) -}}
{{- else -}}
{{- $name := include "sigsweep.etcdName" . -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $eps = append $eps (printf "%s-%d.%s-headless.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.etcd.ports.client)) -}}
{{- end -}}
{{- printf "etcd://%s" (join "," $eps) -}}
{{- end -}}
{{- end -}}

{{/* Coordinator TLS secret name. */}}
{{- define "sigsweep.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "sigsweep.coordinatorName" .) -}}
{{- else -}}
{{- .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Worker (client) TLS secret name. */}}
{{- define "sigsweep.workerTlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "sigsweep.workerName" .) -}}
{{- else -}}
{{- .Values.tls.workerExistingSecret -}}
{{- end -}}
{{- end -}}

{{- define "sigsweep.tokenSecret" -}}
{{- default (printf "%s-token" (include "sigsweep.fullname" .)) .Values.auth.token.existingSecret -}}
{{- end -}}

{{/* Convert a duration like 90s, 5m, 1h, 1h30m into seconds. */}}
{{- define "sigsweep.durationSeconds" -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+[hms]" . -1 -}}
{{- $n := int (trimSuffix "h" (trimSuffix "m" (trimSuffix "s" $part))) -}}
{{- if hasSuffix "h" $part -}}{{- $total = add $total (mul $n 3600) -}}
{{- else if hasSuffix "m" $part -}}{{- $total = add $total (mul $n 60) -}}
{{- else -}}{{- $total = add $total $n -}}{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* Hardened container security context. */}}
{{- define "sigsweep.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sigsweep.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Cross-field validation the JSON schema cannot express. Called from every
workload template so that `helm template -s` of a single file also fails.
*/}}
{{- define "sigsweep.validate" -}}
{{- $v := .Values -}}
{{- if and (eq $v.store.type "embedded") (gt (int $v.coordinator.replicas) 1) -}}
{{- fail "coordinator.replicas > 1 (standby) requires store.type etcd or external: the embedded store is a single-writer local volume" -}}
{{- end -}}
{{- if eq $v.store.type "etcd" -}}
{{- if eq (mod (int $v.etcd.replicas) 2) 0 -}}
{{- fail (printf "etcd.replicas must be odd to keep a quorum (got %d)" (int $v.etcd.replicas)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.store.type "external") (empty $v.externalEtcd.endpoints) -}}
{{- fail "store.type external requires externalEtcd.endpoints" -}}
{{- end -}}
{{- if and (eq $v.store.type "external") $v.externalEtcd.tls.enabled (empty $v.externalEtcd.tls.secretName) -}}
{{- fail "externalEtcd.tls.enabled requires externalEtcd.tls.secretName" -}}
{{- end -}}
{{- if and (eq $v.store.type "external") $v.externalEtcd.auth.enabled (empty $v.externalEtcd.auth.secretName) -}}
{{- fail "externalEtcd.auth.enabled requires externalEtcd.auth.secretName" -}}
{{- end -}}
{{- $drain := int (include "sigsweep.durationSeconds" $v.worker.drainTimeout) -}}
{{- if le (int $v.worker.terminationGracePeriodSeconds) $drain -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must be greater than worker.drainTimeout (%s = %ds) so a draining worker is not killed" (int $v.worker.terminationGracePeriodSeconds) $v.worker.drainTimeout $drain) -}}
{{- end -}}
{{- if $v.tls.enabled -}}
{{- if and (not $v.tls.certManager.enabled) (empty $v.tls.existingSecret) -}}
{{- fail "tls.enabled requires tls.existingSecret or tls.certManager.enabled" -}}
{{- end -}}
{{- if and $v.tls.certManager.enabled (empty $v.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.enabled requires tls.certManager.issuerRef.name" -}}
{{- end -}}
{{- if and $v.tls.mutual (not $v.tls.certManager.enabled) (empty $v.tls.workerExistingSecret) -}}
{{- fail "tls.mutual without cert-manager requires tls.workerExistingSecret" -}}
{{- end -}}
{{- else if or $v.tls.mutual $v.tls.certManager.enabled -}}
{{- fail "tls.mutual and tls.certManager.enabled require tls.enabled=true" -}}
{{- end -}}
{{- if and (eq $v.coordinator.probes.readinessService "sigsweep.v1.SweepService") (gt (int $v.coordinator.replicas) 1) -}}
{{- fail "coordinator.probes.readinessService=sigsweep.v1.SweepService marks standbys unready forever, which stalls rollouts and PodDisruptionBudgets; use \"\" with replicas > 1" -}}
{{- end -}}
{{- end -}}
