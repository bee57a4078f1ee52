{{- define "portcullis.labels" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "portcullis.selector" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The image reference: repository@digest, or repository:tag (appVersion by default). */}}
{{- define "portcullis.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The host of a base URL; fails on one with a path, which the services would not serve. */}}
{{- define "portcullis.host" -}}
{{- $url := urlParse .url -}}
{{- if not (has $url.scheme (list "http" "https")) -}}
{{- fail (printf "%s must be an http:// or https:// URL, not %q" .name .url) -}}
{{- end -}}
{{- if not (or (eq $url.path "") (eq $url.path "/")) -}}
{{- fail (printf "%s must have no path (the services serve /o/{organization} at the root), not %q" .name .url) -}}
{{- end -}}
{{- $url.hostname -}}
{{- end -}}

{{/* The services that routes go to: (name, host) of each one the operator runs. */}}
{{- define "portcullis.routes" -}}
{{- $routes := list -}}
{{- if .Values.services.enabled -}}
{{- $token := include "portcullis.host" (dict "name" "publicBaseUrl" "url" .Values.publicBaseUrl) -}}
{{- if gt (int .Values.services.tokenService.replicas) 0 -}}
{{- $routes = append $routes (dict "service" "portcullis-token-service" "host" $token) -}}
{{- end -}}
{{- if gt (int .Values.services.scimService.replicas) 0 -}}
{{- $scim := include "portcullis.host" (dict "name" "scimBaseUrl" "url" .Values.scimBaseUrl) -}}
{{- if eq $scim $token -}}
{{- fail (printf "scimBaseUrl and publicBaseUrl share the host %s: both services serve under /o/, so routing needs a separate SCIM host (set scimBaseUrl)" $scim) -}}
{{- end -}}
{{- $routes = append $routes (dict "service" "portcullis-scim-service" "host" $scim) -}}
{{- end -}}
{{- end -}}
{{- toJson $routes -}}
{{- end -}}
