{{/* ---------------------------------------------------------------- names */}}

{{- define "amana.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; resource names are "<fullname>-<component>-<role>". */}}
{{- define "amana.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "amana.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of one component's resource. Call with (dict "root" $ "name" "registry" "role" "api"). */}}
{{- define "amana.componentName" -}}
{{- if .role -}}
{{- printf "%s-%s-%s" (include "amana.fullname" .root) .name .role | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" (include "amana.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amana.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "amana.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "amana.secretName" -}}
{{- default (include "amana.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret the migration Jobs read: the chart's hook Secret, or the existing one. */}}
{{- define "amana.migrationSecretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-migrations" (include "amana.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amana.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* ---------------------------------------------------------------- labels */}}

{{- define "amana.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amana.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "amana.labels" -}}
helm.sh/chart: {{ include "amana.chart" . }}
{{ include "amana.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: amana
{{- end -}}

{{/* Call with (dict "root" $ "name" "registry" "role" "api"). */}}
{{- define "amana.componentSelectorLabels" -}}
{{ include "amana.selectorLabels" .root }}
amana.io/service: {{ .name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "amana.componentLabels" -}}
{{ include "amana.labels" .root }}
amana.io/service: {{ .name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* ---------------------------------------------------------------- components */}}

{{/* Call with (dict "name" "registry" "component" $c): "REGISTRY_". */}}
{{- define "amana.envPrefix" -}}
{{- default (printf "%s_" (.name | upper | replace "-" "_")) .component.envPrefix -}}
{{- end -}}

{{- define "amana.module" -}}
{{- default .name .component.module -}}
{{- end -}}

{{/* Whether a component is deployed at all (`enabled: false` turns it off). Call with it. */}}
{{- define "amana.enabled" -}}
{{- if or (not (hasKey . "enabled")) .enabled -}}true{{- end -}}
{{- end -}}

{{- define "amana.hasDatabase" -}}
{{- if and (include "amana.enabled" .component) .component.database .component.database.enabled -}}true{{- end -}}
{{- end -}}

{{- define "amana.databaseName" -}}
{{- $db := default dict .component.database -}}
{{- default (printf "amana_%s" (.name | replace "-" "_")) $db.name -}}
{{- end -}}

{{- define "amana.databaseUrlKey" -}}
{{- printf "%s-database-url" .name -}}
{{- end -}}

{{/* Call with (dict "root" $ "name" "registry" "component" $c). */}}
{{- define "amana.databaseUrl" -}}
{{- $s := .root.Values.secrets -}}
{{- $explicit := get (default dict $s.databaseUrls) .name -}}
{{- if $explicit -}}
{{- $explicit -}}
{{- else -}}
{{- $db := $s.database -}}
{{- printf "postgresql+asyncpg://%s:%s@%s:%v/%s" (urlquery $db.user) (urlquery $db.password) $db.host $db.port (include "amana.databaseName" .) -}}
{{- end -}}
{{- end -}}

{{/* The port of a component's api Service. Call with the component's api map. */}}
{{- define "amana.servicePort" -}}
{{- dig "service" "port" 8000 (default dict .) -}}
{{- end -}}

{{/* The entry named `gateway` is the API gateway. Call with (dict "name" "gateway" ...). */}}
{{- define "amana.isGateway" -}}
{{- if eq .name "gateway" -}}true{{- end -}}
{{- end -}}

{{/*
GATEWAY_ROUTES: the routes of every deployed component with an enabled api, the gateway
excepted, to its api Service (JSON list, sorted by component). Call with the root context.
*/}}
{{- define "amana.gatewayRoutes" -}}
{{- $routes := list -}}
{{- range $name, $c := .Values.components -}}
{{- $api := default dict $c.api -}}
{{- if and (include "amana.enabled" $c) $api.enabled (not (include "amana.isGateway" (dict "name" $name))) -}}
{{- $service := include "amana.componentName" (dict "root" $ "name" $name "role" "api") -}}
{{- $module := include "amana.module" (dict "name" $name "component" $c) -}}
{{- range $route := $c.routes -}}
{{- $entry := dict
      "prefix" $route.prefix
      "service" $module
      "upstream" (printf "http://%s:%s" $service (include "amana.servicePort" $api))
      "upstream_prefix" (default "" $route.upstreamPrefix) -}}
{{- with $route.timeoutS -}}
{{- $_ := set $entry "timeout_s" . -}}
{{- end -}}
{{- with $route.maxBodyBytes -}}
{{- $_ := set $entry "max_body_bytes" . -}}
{{- end -}}
{{- with $route.publicPaths -}}
{{- $_ := set $entry "public_paths" . -}}
{{- end -}}
{{- $routes = append $routes $entry -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $routes -}}
{{- end -}}

{{/*
Configuration only some services have, as lines of the component's config map: the
gateway's routes, CORS and rate limits; the provider's API host allowlist, comma-separated
because that is how provider.settings reads it (not JSON).
Call with (dict "root" $ "name" "gateway" "component" $c).
*/}}
{{- define "amana.serviceSpecificConfig" -}}
{{- $p := include "amana.envPrefix" . -}}
{{- $v := .root.Values -}}
{{- if include "amana.isGateway" . }}
{{- $routes := include "amana.gatewayRoutes" .root }}
{{- $services := list }}
{{- range fromJsonArray $routes }}
{{- $services = append $services .service }}
{{- end }}
{{ $p }}ROUTES: {{ $routes | quote }}
{{ $p }}ACTIVE_SERVICES: {{ toJson (uniq $services) | quote }}
{{ $p }}CORS_ORIGINS: {{ toJson $v.gateway.corsOrigins | quote }}
{{ $p }}RATE_LIMIT_PER_S: {{ $v.gateway.rateLimit.perSecond | quote }}
{{ $p }}RATE_LIMIT_BURST: {{ $v.gateway.rateLimit.burst | quote }}
{{ $p }}TRUSTED_PROXIES: {{ toJson $v.gateway.trustedProxies | quote }}
{{- with $v.gateway.publicBaseUrl }}
{{ $p }}PUBLIC_BASE_URL: {{ . | quote }}
{{- end }}
{{- end }}
{{- if and (eq .name "provider") $v.provider.allowedApiHosts }}
{{ $p }}ALLOWED_API_HOSTS: {{ join "," $v.provider.allowedApiHosts | quote }}
{{- end }}
{{- end -}}

{{- define "amana.hasJwtSecret" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.jwtSecret -}}true{{- end -}}
{{- end -}}

{{/*
Non-secret configuration of one component, as a YAML map (its ConfigMap's data, and the
migration Job's env). Call with (dict "root" $ "name" "registry" "component" $c).
*/}}
{{- define "amana.componentConfig" -}}
{{- $g := .root.Values.global -}}
{{- $p := include "amana.envPrefix" . -}}
{{- $api := default dict .component.api -}}
AMANA_KAFKA_BOOTSTRAP: {{ $g.kafka.bootstrap | quote }}
{{ $p }}ENVIRONMENT: {{ $g.environment | quote }}
{{- include "amana.kafkaConfig" . }}
{{ $p }}LOG_LEVEL: {{ default $g.logLevel .component.logLevel | quote }}
{{ $p }}HOST: "0.0.0.0"
{{ $p }}PORT: {{ default 8000 $api.port | quote }}
{{- with $g.jwksUrl }}
{{ $p }}JWKS_URL: {{ . | quote }}
{{- end }}
{{- include "amana.serviceSpecificConfig" . }}
{{- range $key, $value := $g.env }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- range $key, $value := .component.env }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The Kafka client settings of one component (global.kafka), as ConfigMap lines. */}}
{{- define "amana.kafkaConfig" -}}
{{- $p := include "amana.envPrefix" . -}}
{{- $k := .root.Values.global.kafka }}
{{ $p }}KAFKA_BOOTSTRAP: {{ $k.bootstrap | quote }}
{{ $p }}KAFKA_SECURITY_PROTOCOL: {{ $k.securityProtocol | quote }}
{{ $p }}KAFKA_SASL_MECHANISM: {{ $k.saslMechanism | quote }}
{{ $p }}KAFKA_REPLICATION_FACTOR: {{ $k.replicationFactor | quote }}
{{ $p }}KAFKA_MIN_INSYNC_REPLICAS: {{ $k.minInsyncReplicas | quote }}
{{- if $k.tlsSecret }}
{{ $p }}KAFKA_SSL_CA_FILE: {{ printf "%s/%s" (include "amana.kafkaTlsPath" .) $k.tlsCaKey | quote }}
{{- if $k.tlsCertKey }}
{{ $p }}KAFKA_SSL_CERT_FILE: {{ printf "%s/%s" (include "amana.kafkaTlsPath" .) $k.tlsCertKey | quote }}
{{ $p }}KAFKA_SSL_KEY_FILE: {{ printf "%s/%s" (include "amana.kafkaTlsPath" .) $k.tlsKeyKey | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "amana.kafkaTlsPath" -}}/etc/amana/kafka-tls{{- end -}}

{{/*
The env list of one container: the secret environment (database URL, JWT secret) as
references to the Secret, never literal values, then the literal `extra` map.
Call with (dict "root" $ "name" "registry" "component" $c "secretName" "..." "extra" $map).
*/}}
{{- define "amana.containerEnv" -}}
{{- $p := include "amana.envPrefix" . -}}
{{- if include "amana.hasDatabase" . }}
- name: {{ $p }}DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ include "amana.databaseUrlKey" . }}
{{- end }}
{{- if include "amana.hasJwtSecret" .root }}
- name: {{ $p }}JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: jwt-secret
      {{- if .root.Values.global.jwksUrl }}
      optional: true
      {{- end }}
{{- end }}
{{- with .root.Values.global.kafka.existingSecret }}
- name: {{ $p }}KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.root.Values.global.kafka.usernameKey }}
- name: {{ $p }}KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.root.Values.global.kafka.passwordKey }}
{{- end }}
{{- if include "amana.isGateway" . }}
- name: {{ $p }}CLIENTS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: gateway-clients
      optional: true
{{- end }}
{{- range $key, $value := .extra }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The data of the chart-managed Secret (base64), also used by the migration hook Secret. */}}
{{- define "amana.secretData" -}}
{{- if .Values.secrets.jwtSecret }}
jwt-secret: {{ .Values.secrets.jwtSecret | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.gatewayClients }}
gateway-clients: {{ toJson . | b64enc | quote }}
{{- end }}
{{- range $name, $c := .Values.components }}
{{- $ctx := dict "root" $ "name" $name "component" $c }}
{{- if include "amana.hasDatabase" $ctx }}
{{ include "amana.databaseUrlKey" $ctx }}: {{ include "amana.databaseUrl" $ctx | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- pods */}}

{{/* Pod-level settings shared by every Deployment and Job. */}}
{{- define "amana.podDefaults" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- with .Values.global.kafka.tlsSecret }}
  - name: kafka-tls
    secret:
      secretName: {{ . }}
      defaultMode: 0440
{{- end }}
{{- end -}}

{{/* Container-level settings shared by every container: image, securityContext, /tmp. */}}
{{- define "amana.containerDefaults" -}}
image: {{ include "amana.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- if .Values.global.kafka.tlsSecret }}
  - name: kafka-tls
    mountPath: {{ include "amana.kafkaTlsPath" . }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- checks */}}

{{/* Refuses a release without a way to verify tokens, and a production release with
development secrets; run once, from components.yaml. */}}
{{- define "amana.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.global.environment (list "development" "test" "production")) -}}
{{- fail (printf "global.environment must be development, test or production, not %q" $v.global.environment) -}}
{{- end -}}
{{- include "amana.validateKafka" . -}}
{{- if and (eq $v.global.environment "production") (has "*" $v.gateway.corsOrigins) -}}
{{- fail "production refuses gateway.corsOrigins \"*\": list the frontends' origins" -}}
{{- end -}}
{{- if not (or $v.secrets.jwtSecret $v.secrets.existingSecret $v.global.jwksUrl) -}}
{{- fail "the services verify tokens with a shared secret or the identity provider's keys: set secrets.jwtSecret (at least 32 random bytes; or secrets.existingSecret holding jwt-secret) or global.jwksUrl" -}}
{{- end -}}
{{- if and (eq $v.global.environment "production") (not $v.secrets.existingSecret) -}}
{{- range $name, $c := $v.components -}}
{{- $ctx := dict "root" $ "name" $name "component" $c -}}
{{- if and (include "amana.hasDatabase" $ctx) (not (get (default dict $v.secrets.databaseUrls) $name)) (has (toString $v.secrets.database.password) (list "" "amana" "postgres" "password")) -}}
{{- fail (printf "production needs secrets.existingSecret, secrets.databaseUrls.%s or a real secrets.database.password" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}


{{/* global.kafka: credentials for SASL, a certificate with its key, replicas in production. */}}
{{- define "amana.validateKafka" -}}
{{- $k := .Values.global.kafka -}}
{{- if and (hasPrefix "SASL_" $k.securityProtocol) (not $k.existingSecret) -}}
{{- fail (printf "global.kafka.securityProtocol %s needs global.kafka.existingSecret (the SASL user name and password)" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.tlsSecret (not (has $k.securityProtocol (list "SSL" "SASL_SSL"))) -}}
{{- fail "global.kafka.tlsSecret is used with securityProtocol SSL or SASL_SSL only" -}}
{{- end -}}
{{- if ne (empty $k.tlsCertKey) (empty $k.tlsKeyKey) -}}
{{- fail "global.kafka.tlsCertKey and global.kafka.tlsKeyKey go together (a certificate and its key)" -}}
{{- end -}}
{{- if and $k.tlsCertKey (not $k.tlsSecret) -}}
{{- fail "global.kafka.tlsCertKey needs global.kafka.tlsSecret" -}}
{{- end -}}
{{- if and (eq .Values.global.environment "production") (lt (int $k.replicationFactor) 2) -}}
{{- fail "production refuses global.kafka.replicationFactor 1: a broker's loss would lose events" -}}
{{- end -}}
{{- if gt (int $k.minInsyncReplicas) (int $k.replicationFactor) -}}
{{- fail "global.kafka.minInsyncReplicas cannot exceed global.kafka.replicationFactor" -}}
{{- end -}}
{{- end -}}
