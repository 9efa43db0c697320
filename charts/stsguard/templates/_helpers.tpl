{{- define "stsguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stsguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "stsguard.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "stsguard.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stsguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stsguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stsguard.labels" -}}
{{ include "stsguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: stsguard
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "stsguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "stsguard.tlsSecret" -}}
{{- if eq .Values.certs.mode "secret" -}}
{{ required "certs.secret.name is required with certs.mode=secret" .Values.certs.secret.name }}
{{- else -}}
{{ include "stsguard.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{/* The policy file: values.policy, with the role image defaulted to this chart's image. */}}
{{- define "stsguard.policy" -}}
{{- $p := deepCopy .Values.policy -}}
{{- if not $p.mutation.roles.image -}}
{{- $_ := set $p.mutation.roles "image" (include "stsguard.image" .) -}}
{{- end -}}
{{- $_ := set $p "audit" (dict "interval" (toString .Values.audit.interval) "policyReports" .Values.audit.policyReports) -}}
{{- toYaml $p -}}
{{- end -}}

{{/* Namespaces the webhooks never see. */}}
{{- define "stsguard.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-node-lease" .Release.Namespace -}}
{{- $ns = concat $ns .Values.webhook.excludeNamespaces .Values.policy.excludeNamespaces | uniq | sortAlpha -}}
{{- toJson $ns -}}
{{- end -}}
