{{/* Names, labels and the certificate settings shared by the templates. */}}

{{- define "chaos-registry-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: the release name, plus the chart name unless the release name
contains it. Release "chaos-registry-webhook" gives the names the server uses by default.
*/}}
{{- define "chaos-registry-webhook.fullname" -}}
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

{{- define "chaos-registry-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chaos-registry-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chaos-registry-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chaos-registry-webhook.labels" -}}
helm.sh/chart: {{ include "chaos-registry-webhook.chart" . }}
{{ include "chaos-registry-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: chaos-registry-webhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "chaos-registry-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chaos-registry-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chaos-registry-webhook.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The defaults ConfigMap: the server reads it by this name (--defaults-configmap). */}}
{{- define "chaos-registry-webhook.defaultsConfigMap" -}}
chaos-registry-defaults
{{- end }}

{{- define "chaos-registry-webhook.leaseName" -}}
{{- printf "%s-leader" (include "chaos-registry-webhook.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the serving certificate, whichever mode makes it. */}}
{{- define "chaos-registry-webhook.tlsSecretName" -}}
{{- $mode := .Values.certificates.mode }}
{{- if eq $mode "selfManaged" }}
{{- printf "%s-tls" (include "chaos-registry-webhook.fullname" .) }}
{{- else if eq $mode "certManager" }}
{{- printf "%s-serving-cert" (include "chaos-registry-webhook.fullname" .) }}
{{- else }}
{{- required "certificates.userProvided.secretName is required when certificates.mode is userProvided" .Values.certificates.userProvided.secretName }}
{{- end }}
{{- end }}

{{- define "chaos-registry-webhook.certificateName" -}}
{{- printf "%s-serving" (include "chaos-registry-webhook.fullname" .) }}
{{- end }}

{{- define "chaos-registry-webhook.issuerName" -}}
{{- printf "%s-selfsigned" (include "chaos-registry-webhook.fullname" .) }}
{{- end }}

{{/* Source namespaces of pull secrets other than the release namespace, without duplicates. */}}
{{- define "chaos-registry-webhook.extraSourceNamespaces" -}}
{{- $extra := list }}
{{- range .Values.secretSourceNamespaces }}
{{- if and (ne . $.Release.Namespace) (not (has . $extra)) }}
{{- $extra = append $extra . }}
{{- end }}
{{- end }}
{{- toJson $extra }}
{{- end }}

{{/* The objects of `helm test` (templates/tests/): its Namespace, account, ServiceAccount and pod. */}}
{{- define "chaos-registry-webhook.testName" -}}
{{- printf "%s-test" (include "chaos-registry-webhook.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
