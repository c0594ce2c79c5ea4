# The steps of deploying the platform that every cluster shares, sourced by deploy/cluster/platform.sh
# (the local single-node cluster) and deploy/kind/up.sh (kind). The caller defines `kubectl` (its
# cluster's), `log`, `die`, REPO and PYTHON.
# shellcheck shell=bash

PLATFORM_SERVICES="auth orders payments notifications"

# Prometheus, kube-state-metrics and Jaeger in namespace monitoring (deploy/monitoring/README.md: for
# a cluster that has none), from KUSTOMIZATION (deploy/monitoring/base or local), with the
# platform's rules and the cluster's (deploy/monitoring/rules) as ConfigMap prometheus-rules, made
# before Prometheus starts and reads them; a Prometheus already running restarts when they changed
# (it reads rule files at start).
platform_monitoring_apply() {
	local kustomization=$1 before after
	kubectl apply --server-side --field-manager=platform-rules -f "$REPO/deploy/monitoring/base/namespace.yaml" >/dev/null ||
		die "kubectl apply --server-side -f deploy/monitoring/base/namespace.yaml failed"
	before=$(kubectl -n monitoring get configmap prometheus-rules -o jsonpath='{.metadata.resourceVersion}' 2>/dev/null || true)
	kubectl -n monitoring create configmap prometheus-rules --from-file="$REPO/platform/prometheus/rules" \
		--from-file="$REPO/deploy/monitoring/rules" --dry-run=client -o yaml | kubectl apply --server-side --field-manager=platform-rules -f - >/dev/null ||
		die "kubectl apply of ConfigMap prometheus-rules (platform/prometheus/rules, deploy/monitoring/rules) failed"
	after=$(kubectl -n monitoring get configmap prometheus-rules -o jsonpath='{.metadata.resourceVersion}')
	kubectl apply --server-side --field-manager=platform -k "$kustomization" >/dev/null ||
		die "kubectl apply --server-side -k $kustomization failed"
	if [[ -n $before && $before != "$after" ]]; then
		kubectl -n monitoring rollout restart deployment/prometheus >/dev/null ||
			die "the rules changed and Prometheus could not be restarted to read them"
	fi
}

# `kubectl apply --server-side` of an overlay. After a release the tool owns the live color, the pod
# templates (images, settings) and the replicas: conflicts on those fields with "bluegreen", or the
# guard's refusal of a template the manifests changed since (deploy/base/bluegreen-guard.yaml), and
# nothing else, mean the cluster is where the tool put it; a changed template reaches a color through
# deploy --manifests.
platform_overlay_apply() {
	local overlay=$1 output failures
	if ! output=$(kubectl apply --server-side --field-manager=platform -k "$overlay" 2>&1); then
		failures=$(grep -E '^(Apply failed|error|Error from server)' <<<"$output" || true)
		if [[ -n $failures ]] && ! grep -Evq 'conflicts? with "bluegreen"|platform-bluegreen-owned-fields.*denied request' <<<"$failures"; then
			log "manifests applied; $(wc -l <<<"$failures") objects keep what the blue/green tool gave them since its last release"
		else
			echo "$output" >&2
			die "kubectl apply --server-side -k $overlay failed"
		fi
	fi
}

# The first apply's Jobs done, every live color, the monitoring and the relays available.
platform_wait() {
	local service live relay
	log "waiting for the migration Jobs"
	kubectl -n platform wait --for=condition=complete job -l app.kubernetes.io/component=migrate --timeout=600s >/dev/null ||
		die "a migration Job did not complete; kubectl -n platform get jobs,pods"
	kubectl -n platform wait --for=condition=complete job/auth-service-clients --timeout=300s >/dev/null ||
		die "the service clients Job did not complete; kubectl -n platform logs job/auth-service-clients"
	for service in $PLATFORM_SERVICES; do
		live=$(kubectl -n platform get service "$service" -o jsonpath='{.spec.selector.color}')
		kubectl -n platform rollout status "deployment/$service-$live" --timeout=300s >/dev/null ||
			die "$service-$live is not available; kubectl -n platform describe deployment $service-$live"
	done
	kubectl -n monitoring rollout status deployment/prometheus --timeout=300s >/dev/null ||
		die "Prometheus is not available; kubectl -n monitoring describe deployment prometheus"
	kubectl -n monitoring rollout status deployment/kube-state-metrics --timeout=300s >/dev/null ||
		die "kube-state-metrics is not available; kubectl -n monitoring logs deployment/kube-state-metrics"
	kubectl -n monitoring rollout status deployment/jaeger --timeout=300s >/dev/null ||
		die "Jaeger is not available; kubectl -n monitoring logs deployment/jaeger"
	for relay in orders-outbox-relay payments-outbox-relay; do
		kubectl -n platform rollout status "deployment/$relay" --timeout=300s >/dev/null ||
			die "$relay is not available"
	done
}

# Each service's idle color to zero (the first apply starts both), with the blue/green tool;
# the arguments pick the cluster (--kubeconfig FILE or --context NAME).
platform_idle_colors_scale_down() {
	local service
	for service in $PLATFORM_SERVICES; do
		"$PYTHON" -m deploy.bluegreen "$@" scale-down "$service" --no-wait >&2 ||
			log "$service: the idle color stays up (see above)"
	done
}
