{{/*
RBAC rules, as data. They mirror smsmesh_operator/rbac.py exactly (tests/helm compares them
grant by grant); change both together. Why each rule is there is explained in that module.
*/}}

{{/* The operator's Role in the watched namespace, or ClusterRole when it watches them all. */}}
{{- define "smsmesh.operatorRules" -}}
- apiGroups: [smsmesh.io]
  resources: [smppconnections, smsroutes, smsapplications]
  verbs: [get, list, watch]
- apiGroups: [smsmesh.io]
  resources: [smppconnections/status, smsroutes/status, smsapplications/status]
  verbs: [patch]
- apiGroups: [smsmesh.io]
  resources: [smppconnections/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [smsmesh-routing-keys]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/*
The router's only API access: read the routing snapshot the operator publishes, by name. list
and watch with resourceNames are allowed only with a fieldSelector on metadata.name, which is
how the router watches them.
*/}}
{{- define "smsmesh.routerRules" -}}
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [smsmesh-routing]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [smsmesh-routing-keys]
  verbs: [get, list, watch]
{{- end -}}
