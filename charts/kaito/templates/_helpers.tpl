{{- define "kaito.labels" -}}
app.kubernetes.io/name: kaito
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kaito.controller" -}}{{ .Release.Name }}-controller{{- end }}
{{- define "kaito.provisioner" -}}{{ .Release.Name }}-provisioner{{- end }}
{{- define "kaito.webhookService" -}}{{ .Release.Name }}-webhook{{- end }}
{{- define "kaito.webhookSecret" -}}{{ .Release.Name }}-webhook-cert{{- end }}

{{- define "kaito.featureGates" -}}
{{- $gates := list -}}
{{- range $name, $on := .Values.featureGates -}}{{- $gates = append $gates (printf "%s=%v" $name $on) -}}{{- end -}}
{{- join "," $gates -}}
{{- end }}

{{/* Pods run as non-root, read-only, without capabilities. */}}
{{- define "kaito.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "kaito.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}
