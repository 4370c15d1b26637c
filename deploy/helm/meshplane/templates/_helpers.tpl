{{/* Release-scoped name: the release name, or <release>-meshplane when it lacks "meshplane". */}}
{{- define "meshplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshplane.coordinatorName" -}}
{{- printf "%s-coordinator" (include "meshplane.fullname" .) -}}
{{- end -}}

{{/* Adapter object name; call with (dict "root" $ "mesh" "istio"). */}}
{{- define "meshplane.adapterName" -}}
{{- printf "%s-adapter-%s" (include "meshplane.fullname" .root) .mesh -}}
{{- end -}}

{{/* Cluster-scoped names carry the namespace so two releases never collide. */}}
{{- define "meshplane.adapterClusterName" -}}
{{- printf "%s-%s-adapter-%s" .root.Release.Namespace (include "meshplane.fullname" .root) .mesh -}}
{{- end -}}

{{- define "meshplane.coordinatorClusterName" -}}
{{- printf "%s-%s-coordinator" .Release.Namespace (include "meshplane.fullname" .) -}}
{{- end -}}

{{- define "meshplane.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshplane.labels" -}}
{{ include "meshplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshplane
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "meshplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Writable scratch space on a read-only root filesystem (mounts and volumes). */}}
{{- define "meshplane.scratchMounts" -}}
- name: state
  mountPath: /var/lib/meshplane/state
- name: cache
  mountPath: /var/cache/meshplane
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Call with (dict "root" $ "stateClaim" "<PVC name or empty>"). */}}
{{- define "meshplane.scratchVolumes" -}}
- name: state
{{- if .stateClaim }}
  persistentVolumeClaim:
    claimName: {{ .stateClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .root.Values.scratchSizeLimit }}
{{- end }}
- name: cache
  emptyDir:
    sizeLimit: {{ .root.Values.scratchSizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.scratchSizeLimit }}
{{- end -}}

{{/* Refuses inconsistent tls values; renders nothing. */}}
{{- define "meshplane.checkTls" -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a Secret with tls.crt, tls.key and ca.crt (see deploy/README.md)" -}}
{{- end -}}
{{- if and .Values.tls.coordinator.enabled (not .Values.tls.enabled) -}}
{{- fail "tls.coordinator.enabled needs tls.enabled (and tls.secretName)" -}}
{{- end -}}
{{- if .Values.meshery.enabled -}}
{{- if .Values.tls.enabled -}}
{{- fail "meshery.enabled needs tls.enabled=false: a Meshery server connects to adapters in plaintext" -}}
{{- end -}}
{{- if not .Values.meshery.allowedClusterServers -}}
{{- fail "meshery.enabled needs meshery.allowedClusterServers: the API servers Meshery's kubeconfigs point at" -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.meshery.clients) -}}
{{- fail "meshery.enabled needs meshery.clients (the Meshery server's pods) while networkPolicy.enabled" -}}
{{- end -}}
{{- if .Values.link.enabled -}}
{{- fail "meshery.enabled needs link.enabled=false: a Meshery server calls adapters directly and cannot present the coordinator link token" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Refuses a coordinator nobody could authenticate to; renders nothing. */}}
{{- define "meshplane.checkAuth" -}}
{{- $auth := .Values.auth -}}
{{- if not (or $auth.kubernetes.enabled $auth.tokenFile.existingSecret .Values.tls.coordinator.enabled $auth.allowAnonymous) -}}
{{- fail "the coordinator needs a way to authenticate callers: auth.kubernetes.enabled, auth.tokenFile.existingSecret or tls.coordinator.enabled (client certificates); auth.allowAnonymous=true lets anyone who reaches it do anything" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the coordinator-adapter link token. */}}
{{- define "meshplane.linkSecretName" -}}
{{- .Values.link.existingSecret | default (printf "%s-link" (include "meshplane.fullname" .)) -}}
{{- end -}}

{{/* Where the link token is mounted (the file both flags name). */}}
{{- define "meshplane.linkDir" -}}
/etc/meshplane/link
{{- end -}}

{{- define "meshplane.linkMount" -}}
- name: link
  mountPath: {{ include "meshplane.linkDir" . }}
  readOnly: true
{{- end -}}

{{- define "meshplane.linkVolume" -}}
- name: link
  secret:
    secretName: {{ include "meshplane.linkSecretName" . }}
    items:
      - key: {{ .Values.link.key }}
        path: token
    # 0440: readable by the pod's group (fsGroup) only.
    defaultMode: 288
{{- end -}}

{{/* The name the coordinator verifies in adapter certificates: it dials pod IPs. */}}
{{- define "meshplane.adapterTlsServerName" -}}
{{- .Values.tls.serverName | default (printf "%s-adapter.%s.svc" (include "meshplane.fullname" .) .Release.Namespace) -}}
{{- end -}}

{{/* Where the tls.secretName Secret is mounted: tls.crt, tls.key, ca.crt. */}}
{{- define "meshplane.tlsDir" -}}
/etc/meshplane/tls
{{- end -}}

{{- define "meshplane.tlsMount" -}}
- name: tls
  mountPath: {{ include "meshplane.tlsDir" . }}
  readOnly: true
{{- end -}}

{{- define "meshplane.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    # 0440: readable by the pod's group (fsGroup) only.
    defaultMode: 288
{{- end -}}

{{/* The meshes the chart knows: those of files/meshes.yaml (`meshplane chart-meshes`: every
registered mesh and its declared port) and those adapters.<mesh> names, space-separated. */}}
{{- define "meshplane.meshNames" -}}
{{- $declared := (fromYaml (.Files.Get "files/meshes.yaml")).meshes | default dict -}}
{{- concat (keys $declared) (keys .Values.adapters) | uniq | sortAlpha | join " " -}}
{{- end -}}

{{/* One adapter's values: each key of adapters.<mesh> when set, else the mesh's declared port
(files/meshes.yaml) and adapterDefaults. Call with (dict "root" $ "mesh" "istio" "into" $dict):
it fills $dict, so the values keep their types. */}}
{{- define "meshplane.adapterValues" -}}
{{- $root := .root -}}
{{- $own := get $root.Values.adapters .mesh | default dict -}}
{{- $d := $root.Values.adapterDefaults -}}
{{- $declared := get ((fromYaml ($root.Files.Get "files/meshes.yaml")).meshes | default dict) .mesh | default dict -}}
{{- $defaults := dict "enabled" false "port" $declared.port "chartRepo" $d.chartRepo "manifestsUrl" $d.manifestsUrl "extraRules" $d.extraRules "resources" $d.resources -}}
{{- range $key, $value := $defaults -}}
{{- $_ := set $.into $key (ternary (get $own $key) $value (hasKey $own $key)) -}}
{{- end -}}
{{- $ownMirror := $own.mirror | default dict -}}
{{- $mirror := dict -}}
{{- range $key, $value := $d.mirror -}}
{{- $_ := set $mirror $key (ternary (get $ownMirror $key) $value (hasKey $ownMirror $key)) -}}
{{- end -}}
{{- $_ := set .into "mirror" $mirror -}}
{{- if and (get .into "enabled") (not (get .into "port")) -}}
{{- fail (printf "adapters.%s.port is needed: %s is not in files/meshes.yaml (a registered mesh is; regenerate it with `meshplane chart-meshes > deploy/helm/meshplane/files/meshes.yaml`)" .mesh .mesh) -}}
{{- end -}}
{{- end -}}
