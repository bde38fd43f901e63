{{/*
Names, labels and the few values more than one template needs. Everything a template derives
from values goes through here, so the operator, router and NetworkPolicy agree on it.
*/}}

{{/* Base name of every object: the release name unless fullnameOverride is set. */}}
{{- define "smsmesh.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "smsmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: stable for the life of a release (never the version). */}}
{{- define "smsmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smsmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects. Call with (dict "root" $ "component" "router"). */}}
{{- define "smsmesh.labels" -}}
{{ include "smsmesh.selectorLabels" . }}
app.kubernetes.io/part-of: smsmesh
app.kubernetes.io/version: {{ include "smsmesh.imageTag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "smsmesh.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* The one image of every role; a digest, when given, pins it. */}}
{{- define "smsmesh.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ include "smsmesh.imageTag" . }}
{{- end -}}
{{- end -}}

{{/*
The Secret holding the store URL: an existing one, or (development only) the one the chart
creates from store.url. Exactly one of the two must be set.
*/}}
{{- define "smsmesh.storeSecretName" -}}
{{- if and .Values.store.existingSecret .Values.store.url -}}
{{- fail "store: set only one of store.existingSecret (production) and store.url (development only), not both" -}}
{{- else if .Values.store.existingSecret -}}
{{ .Values.store.existingSecret }}
{{- else if .Values.store.url -}}
{{ include "smsmesh.fullname" . }}-store
{{- else -}}
{{- fail "store: set store.existingSecret to the name of a Secret holding the database URL (key store.key, default \"url\"), or store.url for development only" -}}
{{- end -}}
{{- end -}}

{{/* The container env var every store user gets: SMSMESH_STORE_URL from the store Secret. */}}
{{- define "smsmesh.storeEnv" -}}
- name: SMSMESH_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "smsmesh.storeSecretName" . }}
      key: {{ .Values.store.key }}
{{- end -}}

{{/*
Namespace the operator reconciles. operator.watchNamespace unset: the release namespace;
"" : every namespace (the operator then gets a ClusterRole).
*/}}
{{- define "smsmesh.watchNamespace" -}}
{{- if hasKey .Values.operator "watchNamespace" -}}
{{ .Values.operator.watchNamespace }}
{{- else -}}
{{ .Release.Namespace }}
{{- end -}}
{{- end -}}

{{/*
Namespace of the routing snapshot (ConfigMap smsmesh-routing, Secret smsmesh-routing-keys) the
router watches. The operator publishes one per watched namespace: the router reads the watched
namespace's, or the release namespace's when the operator watches every namespace.
*/}}
{{- define "smsmesh.snapshotNamespace" -}}
{{ include "smsmesh.watchNamespace" . | default .Release.Namespace }}
{{- end -}}

{{/*
Namespaces that need the connector ServiceAccount and the store Secret: connectors run in the
namespace of their SmppConnection. The release namespace always (router, operator); the
watched namespace too when it is another one. With every namespace watched, create them in
each namespace that holds SmppConnections yourself.
*/}}
{{- define "smsmesh.connectorNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- $watch := include "smsmesh.watchNamespace" . }}
{{- if and $watch (ne $watch .Release.Namespace) }}
{{- $namespaces = append $namespaces $watch }}
{{- end }}
{{- toJson $namespaces }}
{{- end -}}

{{- define "smsmesh.operatorServiceAccountName" -}}
{{ include "smsmesh.fullname" . }}-operator
{{- end -}}

{{- define "smsmesh.routerServiceAccountName" -}}
{{ include "smsmesh.fullname" . }}-router
{{- end -}}

{{/* Pod-level security context shared by every pod spec. */}}
{{- define "smsmesh.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{/* Container-level security context shared by every container. */}}
{{- define "smsmesh.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* A writable /tmp on a read-only root filesystem (Python's tempfile needs one). */}}
{{- define "smsmesh.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "smsmesh.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pod spec fields common to every component: pull secrets, scheduling, priority. */}}
{{- define "smsmesh.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy `ports:` entries for a list of port numbers, TCP (and UDP when asked). */}}
{{- define "smsmesh.netpolPorts" -}}
{{- range .ports }}
- protocol: TCP
  port: {{ . }}
{{- if $.udp }}
- protocol: UDP
  port: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* One egress rule: {to: [...peers], ports: [...]} from a networkPolicy.<dest> value. */}}
{{- define "smsmesh.netpolEgressRule" -}}
- ports:
    {{- include "smsmesh.netpolPorts" (dict "ports" .dest.ports "udp" .udp) | trim | nindent 4 }}
{{- with .dest.to }}
  to:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
Labels the operator puts on the connector pods it creates (smsmesh_operator); the NetworkPolicy
and the metrics Service select connectors by them.
*/}}
{{- define "smsmesh.connectorSelectorLabels" -}}
app.kubernetes.io/name: smsmesh
app.kubernetes.io/component: connector
{{- end -}}

{{/*
Pod template annotations: the values' podAnnotations, plus a checksum of a chart-made store
Secret so pods restart when store.url changes. Renders nothing when there are none.
*/}}
{{- define "smsmesh.podAnnotations" -}}
{{- $annotations := dict }}
{{- if .root.Values.store.url }}
{{- $_ := set $annotations "checksum/store" (.root.Values.store.url | sha256sum | trunc 16) }}
{{- end }}
{{- range $key, $value := .values.podAnnotations }}
{{- $_ := set $annotations $key $value }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
