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

{{/*
The database settings of one component, as YAML: `database` under the component's own
`database` (host, port, sslmode, caSecret, existingSecret, keys, user, password), its name,
and "{component}" in host and existingSecret replaced by the component's name.
Call with (dict "root" $ "name" "registry" "component" $c).
*/}}
{{- define "amana.database" -}}
{{- $own := omit (default dict .component.database) "enabled" "name" -}}
{{- $d := mergeOverwrite (deepCopy .root.Values.database) $own -}}
{{- $_ := set $d "host" (replace "{component}" .name (toString $d.host)) -}}
{{- $_ := set $d "existingSecret" (replace "{component}" .name (toString $d.existingSecret)) -}}
{{- $_ := set $d "name" (include "amana.databaseName" .) -}}
{{- toYaml $d -}}
{{- end -}}

{{/* <PREFIX>DATABASE_URL without credentials (they come from a Secret of their own). */}}
{{- define "amana.databaseUrl" -}}
{{- $d := include "amana.database" . | fromYaml -}}
{{- printf "postgresql+asyncpg://%s:%v/%s" $d.host $d.port $d.name -}}
{{- end -}}

{{/* Where the PostgreSQL server's CA certificate is mounted (database.caSecret). */}}
{{- define "amana.databaseCaPath" -}}/etc/amana/postgres-ca{{- end -}}

{{/*
The Secret and keys of one component's database credentials, as YAML: database.existingSecret
with usernameKey/passwordKey, else the release's Secret (the chart's or secrets.existingSecret)
with <component>-database-username/-password. Call with the component context and secretName.
*/}}
{{- define "amana.databaseCredentials" -}}
{{- $d := include "amana.database" . | fromYaml -}}
{{- if $d.existingSecret -}}
secret: {{ $d.existingSecret }}
usernameKey: {{ $d.usernameKey }}
passwordKey: {{ $d.passwordKey }}
{{- else -}}
secret: {{ .secretName }}
usernameKey: {{ printf "%s-database-username" .name }}
passwordKey: {{ printf "%s-database-password" .name }}
{{- end -}}
{{- end -}}

{{/*
Autoscaling of one role of a component (only apis scale): `autoscaling` under the api's own.
Call with (dict "root" $ "spec" $api "role" "api").
*/}}
{{- define "amana.autoscaling" -}}
{{- if eq .role "api" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.autoscaling) (default dict .spec.autoscaling)) -}}
{{- else -}}
enabled: false
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
{{- if include "amana.hasDatabase" . }}
{{- $d := include "amana.database" . | fromYaml }}
{{ $p }}DATABASE_URL: {{ include "amana.databaseUrl" . | quote }}
PGSSLMODE: {{ $d.sslmode | quote }}
{{- if $d.caSecret }}
PGSSLROOTCERT: {{ printf "%s/%s" (include "amana.databaseCaPath" .) $d.caKey | quote }}
{{- end }}
{{- end }}
{{- with $g.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
OTEL_SERVICE_NAME: {{ printf "amana-%s" $.name | quote }}
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
The env list of one container: the secret environment (database credentials, JWT secret,
Kafka credentials, the component's secretEnv) as references to Secrets, never literal values,
then the literal `extra` map.
Call with (dict "root" $ "name" "registry" "component" $c "secretName" "..." "extra" $map).
*/}}
{{- define "amana.containerEnv" -}}
{{- $p := include "amana.envPrefix" . -}}
{{- if include "amana.hasDatabase" . }}
{{- $cred := include "amana.databaseCredentials" . | fromYaml }}
- name: {{ $p }}DATABASE_USER
  valueFrom:
    secretKeyRef:
      name: {{ $cred.secret }}
      key: {{ $cred.usernameKey }}
- name: {{ $p }}DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $cred.secret }}
      key: {{ $cred.passwordKey }}
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
{{- include "amana.kafkaSecretEnv" (dict "root" .root "prefix" $p) }}
{{- if include "amana.isGateway" . }}
- name: {{ $p }}CLIENTS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: gateway-clients
      optional: true
{{- end }}
{{- range $setting, $ref := .component.secretEnv }}
{{- if include "amana.secretEnvRendered" (dict "root" $.root "ref" $ref) }}
- name: {{ $p }}{{ $setting }}
  valueFrom:
    secretKeyRef:
      name: {{ default $.secretName $ref.secretName }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := .extra }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The Kafka SASL credentials (global.kafka.existingSecret). Call with root and prefix. */}}
{{- define "amana.kafkaSecretEnv" -}}
{{- $k := .root.Values.global.kafka -}}
{{- with $k.existingSecret }}
- name: {{ $.prefix }}KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $k.usernameKey }}
- name: {{ $.prefix }}KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $k.passwordKey }}
{{- end }}
{{- end -}}

{{/*
Whether a secretEnv entry becomes an env reference: always with a Secret someone manages
(its own secretName or secrets.existingSecret); with the chart's Secret only when
secrets.values holds its key (else the service's development default applies, and production
refuses to render a required one). Call with (dict "root" $ "ref" $ref).
*/}}
{{- define "amana.secretEnvRendered" -}}
{{- if or .ref.secretName .root.Values.secrets.existingSecret (hasKey (default dict .root.Values.secrets.values) .ref.key) -}}true{{- end -}}
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
{{- $d := include "amana.database" $ctx | fromYaml }}
{{- if not $d.existingSecret }}
{{ printf "%s-database-username" $name }}: {{ $d.user | toString | b64enc | quote }}
{{ printf "%s-database-password" $name }}: {{ $d.password | toString | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := .Values.secrets.values }}
{{ $key }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- pods */}}

{{/*
Pod-level settings shared by every Deployment and Job: security context, scheduling, the
writable /tmp, the Kafka and PostgreSQL CA volumes. Call with (dict "root" $ "name" ...
"component" $c), or a component of its own (the topic creator).
*/}}
{{- define "amana.podDefaults" -}}
{{- $v := .root.Values -}}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpVolume.sizeLimit }}
{{- with $v.global.kafka.tlsSecret }}
  - name: kafka-tls
    secret:
      secretName: {{ . }}
      defaultMode: 0440
{{- end }}
{{- if include "amana.hasDatabase" . }}
{{- with (include "amana.database" . | fromYaml).caSecret }}
  - name: postgres-ca
    secret:
      secretName: {{ . }}
      defaultMode: 0440
{{- end }}
{{- end }}
{{- end -}}

{{/* Container-level settings shared by every container: image, securityContext, /tmp, the
CA volumes. Call as amana.podDefaults. */}}
{{- define "amana.containerDefaults" -}}
{{- $v := .root.Values -}}
image: {{ include "amana.image" .root | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- if $v.global.kafka.tlsSecret }}
  - name: kafka-tls
    mountPath: {{ include "amana.kafkaTlsPath" . }}
    readOnly: true
{{- end }}
{{- if and (include "amana.hasDatabase" .) (include "amana.database" . | fromYaml).caSecret }}
  - name: postgres-ca
    mountPath: {{ include "amana.databaseCaPath" . }}
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
{{- include "amana.validateDatabase" . -}}
{{- include "amana.validateSecretEnv" . -}}
{{- end -}}

{{/* Per component with a database: credentials that are not the defaults in production, a CA
for the verifying SSL modes. */}}
{{- define "amana.validateDatabase" -}}
{{- $v := .Values -}}
{{- range $name, $c := $v.components -}}
{{- $ctx := dict "root" $ "name" $name "component" $c -}}
{{- if include "amana.hasDatabase" $ctx -}}
{{- $d := include "amana.database" $ctx | fromYaml -}}
{{- if not (has $d.sslmode (list "disable" "allow" "prefer" "require" "verify-ca" "verify-full")) -}}
{{- fail (printf "components.%s: database.sslmode %q is not a PostgreSQL SSL mode" $name $d.sslmode) -}}
{{- end -}}
{{- if and (hasPrefix "verify-" $d.sslmode) (not $d.caSecret) -}}
{{- fail (printf "components.%s: database.sslmode %s needs database.caSecret (the server's CA)" $name $d.sslmode) -}}
{{- end -}}
{{- if and (eq $v.global.environment "production") (not $d.existingSecret) (not $v.secrets.existingSecret) (has (toString $d.password) (list "" "amana" "postgres" "password")) -}}
{{- fail (printf "production needs database.existingSecret (the credentials' Secret, e.g. CloudNativePG's <cluster>-app), secrets.existingSecret or a real database.password (components.%s)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* In production, a required secretEnv setting must reach its service: the chart's own
Secret must hold it (with a Secret you manage, it must hold the key). */}}
{{- define "amana.validateSecretEnv" -}}
{{- if eq .Values.global.environment "production" -}}
{{- range $name, $c := .Values.components -}}
{{- if include "amana.enabled" $c -}}
{{- range $setting, $ref := $c.secretEnv -}}
{{- if and (not $ref.optional) (not (include "amana.secretEnvRendered" (dict "root" $ "ref" $ref))) -}}
{{- fail (printf "production needs components.%s's %s: put %s into secrets.existingSecret (or secrets.values.%s, or set its secretName)" $name $setting $ref.key $ref.key) -}}
{{- end -}}
{{- end -}}
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

{{/* ---------------------------------------------------------------- network policies */}}

{{/* An egress rule to `to` (NetworkPolicy peers; none: anywhere) on `ports`. */}}
{{- define "amana.egressTo" -}}
- {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- toYaml .ports | nindent 4 }}
{{- end -}}

{{- define "amana.egressDns" -}}
{{- include "amana.egressTo" .Values.networkPolicy.dns -}}
{{- end -}}

{{/* The hook Jobs' NetworkPolicies exist before the Jobs, and stay for the next upgrade. */}}
{{- define "amana.jobPolicyHook" -}}
annotations:
  helm.sh/hook: pre-install,pre-upgrade
  helm.sh/hook-weight: "-10"
  helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}

{{/*
Who may reach one api or worker: the ingress controller the gateway's api, the gateway's api
every api it routes to, the metrics scrapers (networkPolicy.metrics) both. Call with the
component context plus "role" and "gateway" (ingress.component).
*/}}
{{- define "amana.ingressRules" -}}
{{- $np := .root.Values.networkPolicy -}}
{{- if eq .role "api" }}
{{- if eq .name .gateway }}
- from:
    {{- toYaml $np.ingressController.from | nindent 4 }}
  ports:
    - port: http
      protocol: TCP
{{- else if .component.routes }}
- from:
    - podSelector:
        matchLabels:
          {{- include "amana.componentSelectorLabels" (dict "root" .root "name" .gateway "role" "api") | nindent 10 }}
  ports:
    - port: http
      protocol: TCP
{{- end }}
{{- end }}
{{- with $np.metrics.from }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - port: http
      protocol: TCP
{{- end }}
{{- end -}}
