#!/usr/bin/env bash
# skewproxy demo (`make demo`): the story on loopback, no AWS account.
#
# A host whose clock is 20 minutes behind (the AWS CLI under `faketime -f -20m`;
# skewproxy with --clock-offset -20m, since Go programs ignore faketime) talks
# to S3 (a real MinIO on 127.0.0.1, which checks signatures and clock skew
# like S3). chrony on 127.0.0.1 (an unprivileged port, -x: it never touches
# the machine's clock) plays the Amazon Time Sync Service.
#
#   1. the CLI copies a file straight to S3 and is refused RequestTimeTooSkewed;
#   2. `skewproxy explain` says which clock is off and by how much;
#   3. the same command through skewproxy succeeds, and the proxy logs that it
#      would have failed without it;
#   4. the admin /status shows the offset skewproxy measured;
#   5. a URL from `skewproxy presign` on the skewed host downloads the file
#      with curl (and one signed with the host clock alone is refused).
#
# Prints a short transcript; exits 0 only if every step behaved as described.
# Stops everything it started. Needs: bin/skewproxy (make build), minio (in
# $(go env GOPATH)/bin), chronyd, faketime, the AWS CLI v2 at /usr/bin/aws,
# curl and python3 -- `make deps` installs them.
#
# Environment: SKEWPROXY (binary, default bin/skewproxy), AWS_CLI (default
# /usr/bin/aws), MINIO, CHRONYD, DEMO_KEEP=1 keeps the work directory,
# DEMO_VERBOSE=1 prints the logs at the end.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SKEWPROXY=${SKEWPROXY:-$ROOT/bin/skewproxy}
AWS_CLI=${AWS_CLI:-/usr/bin/aws}
SKEW=-20m
BUCKET=skewproxy-demo
START=$(date +%s.%N)

# The demo's clients talk only to loopback: no proxy from the caller's
# environment, no shared AWS config.
unset HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy ALL_PROXY all_proxy
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_CA_BUNDLE

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
say() { printf '%s\n' "$*"; }
indent() { sed 's/^/     /'; }
FAILED=0
ok() { say "   ok: $*"; }
bad() {
	say "   FAILED: $*"
	FAILED=$((FAILED + 1))
}
die() {
	say "demo: $*" >&2
	exit 1
}

# --- what we need -----------------------------------------------------------
find_minio() {
	if [ -n "${MINIO:-}" ]; then echo "$MINIO"; return; fi
	local gobin gopath
	if command -v go >/dev/null 2>&1; then
		gobin=$(go env GOBIN 2>/dev/null)
		gopath=$(go env GOPATH 2>/dev/null)
	fi
	for c in "${gobin:-}" "${gopath%%:*}/bin" "$HOME/go/bin"; do
		if [ -n "$c" ] && [ -x "$c/minio" ]; then echo "$c/minio"; return; fi
	done
	command -v minio || true
}
MINIO=$(find_minio)
CHRONYD=${CHRONYD:-$(command -v chronyd || { [ -x /usr/sbin/chronyd ] && echo /usr/sbin/chronyd; } || true)}
[ -x "$SKEWPROXY" ] || die "no skewproxy binary at $SKEWPROXY (run: make build)"
[ -n "$MINIO" ] && [ -x "$MINIO" ] || die "minio not found (run: make deps)"
[ -n "$CHRONYD" ] || die "chronyd not found (run: make deps)"
[ -x "$AWS_CLI" ] || die "AWS CLI v2 not at $AWS_CLI (run: make deps)"
for t in faketime curl python3 timeout; do
	command -v "$t" >/dev/null 2>&1 || die "$t not found (run: make deps)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/skewproxy-demo.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ "${DEMO_VERBOSE:-}" = 1 ]; then
		for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
	fi
	if [ "${DEMO_KEEP:-}" = 1 ]; then say "(work directory kept: $WORK)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # tcp|udp
	python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}
elapsed() { python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$START"; }

# wait_for SECONDS CMD...: poll every 0.1 s until CMD succeeds.
wait_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

export HOME="$WORK/home"
mkdir -p "$HOME"
cd "$WORK" || die "cd $WORK"
export AWS_CONFIG_FILE="$WORK/no-aws-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/no-aws-credentials"
export AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional AWS_MAX_ATTEMPTS=1 AWS_PAGER=
export OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
# The keys of the demo's S3 (MinIO's root user); the app and the proxy both hold them.
export AWS_ACCESS_KEY_ID="demo$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export AWS_SECRET_ACCESS_KEY="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')"

bold "skewproxy demo: a host whose clock is 20 minutes behind, talking to S3"

# --- MinIO: the S3 server (true time) ------------------------------------------
start_minio() {
	local port console
	port=$(free_port tcp) && console=$(free_port tcp) || return 1
	MINIO_ROOT_USER="$AWS_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" \
		MINIO_DOMAIN=s3.us-east-1.amazonaws.com MINIO_SITE_REGION=us-east-1 \
		MINIO_BROWSER=off MINIO_UPDATE=off \
		"$MINIO" server "$WORK/minio-data" --address "127.0.0.1:$port" \
		--console-address "127.0.0.1:$console" --quiet >>"$WORK/minio.log" 2>&1 &
	PIDS+=($!)
	S3=http://127.0.0.1:$port
	wait_for 30 curl -sf --noproxy '*' "$S3/minio/health/ready"
}
start_minio || start_minio || die "MinIO did not start: $(tail -5 "$WORK/minio.log")"

# --- chrony: the time server (true time) ---------------------------------------
start_chrony() {
	local port dir="$WORK/chrony"
	port=$(free_port udp) || return 1
	mkdir -p "$dir"
	cat >"$dir/chrony.conf" <<-EOF
		port $port
		bindaddress 127.0.0.1
		local stratum 8
		allow 127.0.0.1
		cmdport 0
		bindcmdaddress /
		pidfile $dir/chronyd.pid
		driftfile $dir/chrony.drift
	EOF
	local user=(-U)
	[ "$(id -u)" -eq 0 ] && user=(-u root)
	"$CHRONYD" -x -d -f "$dir/chrony.conf" "${user[@]}" >>"$WORK/chrony.log" 2>&1 &
	PIDS+=($!)
	NTP=ntp://127.0.0.1:$port
	wait_for 15 "$SKEWPROXY" time --time-source "$NTP" --timeout 300ms
}
start_chrony || start_chrony || die "chronyd did not answer: $(tail -5 "$WORK/chrony.log")"

# Every client call is bounded, so the demo ends in bounded time.
aws_cli() { timeout 30 "$AWS_CLI" "$@"; }
aws_skewed() { timeout 30 faketime -f "$SKEW" "$AWS_CLI" "$@"; }

aws_cli --endpoint-url "$S3" s3api create-bucket --bucket "$BUCKET" >"$WORK/setup.log" 2>&1 ||
	die "create bucket: $(cat "$WORK/setup.log")"
printf 'hello from a host 20 minutes behind, written at %s (true time)\n' "$(date -u +%FT%TZ)" >"$WORK/hello.txt"
say "   S3: MinIO at $S3 (bucket $BUCKET); NTP: chrony at ${NTP#ntp://}; host clock: $(faketime -f "$SKEW" date -u +%T) (true time $(date -u +%T))"

# --- 1. straight to S3 -----------------------------------------------------------
say
bold "1. faketime -f $SKEW aws s3 cp hello.txt s3://$BUCKET/hello.txt   (straight to S3)"
if aws_skewed --debug --endpoint-url "$S3" s3 cp hello.txt "s3://$BUCKET/hello.txt" >"$WORK/direct.out" 2>"$WORK/direct.debug"; then
	bad "the upload went through; S3 should have refused a request signed 20 minutes ago"
else
	ERRLINE=$(grep -v ' - DEBUG - \|^Traceback\|^  \|^botocore\.' "$WORK/direct.debug" | grep 'An error occurred' | tail -1)
	say "   $ERRLINE"
	if grep -q 'RequestTimeTooSkewed' <<<"$ERRLINE"; then
		ok "refused with RequestTimeTooSkewed"
	else
		bad "refused, but not with RequestTimeTooSkewed"
	fi
fi

# --- 2. skewproxy explain ---------------------------------------------------------
say
bold "2. skewproxy explain <the S3 error>"
# AWS S3 puts RequestTime and ServerTime in this error body; MinIO leaves them
# out, so add them from the same exchange (the request's X-Amz-Date, the
# answer's Date header) to give explain what AWS would.
BODY=$(grep -o '<Error>.*</Error>' "$WORK/direct.debug" | head -1)
REQTIME=$(grep -o "'X-Amz-Date': b'[0-9TZ]*'" "$WORK/direct.debug" | tail -1 | grep -o '[0-9]\{8\}T[0-9]\{6\}Z')
SRVDATE=$(grep 'Response headers' "$WORK/direct.debug" | grep -o "'Date': '[^']*'" | tail -1 | cut -d"'" -f4)
if [ -n "$BODY" ] && [ -n "$REQTIME" ] && [ -n "$SRVDATE" ]; then
	SRVTIME=$(date -u -d "$SRVDATE" +%FT%TZ)
	BODY=${BODY/<\/Error>/<RequestTime>$REQTIME<\/RequestTime><ServerTime>$SRVTIME<\/ServerTime><MaxAllowedSkewMilliseconds>900000<\/MaxAllowedSkewMilliseconds><\/Error>}
	say "   (MinIO's error body lacks AWS's RequestTime/ServerTime: added from X-Amz-Date $REQTIME and Date: $SRVDATE)"
else
	BODY=${ERRLINE:-}
fi
if "$SKEWPROXY" explain "$BODY" >"$WORK/explain.txt" 2>&1 &&
	"$SKEWPROXY" explain --json "$BODY" >"$WORK/explain.json" 2>&1; then
	grep -v '^$' "$WORK/explain.txt" | head -2 | indent
	read -r FAILURE HOSTCLOCK SKEWSECS < <(python3 -c 'import json,sys
e=json.load(open(sys.argv[1])); print(e["failure"], e["host_clock"], e["skew_seconds"])' "$WORK/explain.json" 2>/dev/null)
	if [ "$FAILURE" = request_time_too_skewed ] && [ "$HOSTCLOCK" = behind ] &&
		python3 -c 'import sys; sys.exit(0 if abs(float(sys.argv[1])+1200) <= 5 else 1)' "$SKEWSECS" 2>/dev/null; then
		ok "the host clock is behind by $(printf '%.0f' "${SKEWSECS#-}") s"
	else
		bad "explain said failure=$FAILURE host_clock=$HOSTCLOCK skew_seconds=$SKEWSECS; want request_time_too_skewed, behind, about -1200"
	fi
else
	bad "skewproxy explain failed: $(cat "$WORK/explain.txt")"
fi

# --- skewproxy: on the same skewed host, corrected by NTP ----------------------
"$SKEWPROXY" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
	--state-dir "$WORK/state" --ca-export "$WORK/skewproxy-ca.pem" \
	--time-source "$NTP" --clock-offset "$SKEW" \
	--resolve "s3.us-east-1.amazonaws.com:443=$S3" \
	--resolve "*.s3.us-east-1.amazonaws.com:443=$S3" \
	--log-format text >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
serving() { grep -q 'msg="skewproxy serving"' "$WORK/proxy.log"; }
wait_for 20 serving || die "skewproxy did not start: $(tail -5 "$WORK/proxy.log")"
PROXY=$(grep 'msg="skewproxy serving"' "$WORK/proxy.log" | grep -o ' listen=[^ ]*' | cut -d= -f2)
ADMIN=$(grep 'msg="skewproxy serving"' "$WORK/proxy.log" | grep -o ' admin=[^ ]*' | cut -d= -f2)
wait_for 10 curl -sf --noproxy '*' "http://$ADMIN/readyz" || bad "skewproxy /readyz did not answer 200 within 10 s"

# --- 3. through skewproxy -----------------------------------------------------------
say
bold "3. HTTPS_PROXY=http://$PROXY AWS_CA_BUNDLE=skewproxy-ca.pem faketime -f $SKEW aws s3 cp hello.txt s3://$BUCKET/hello.txt"
if HTTPS_PROXY="http://$PROXY" AWS_CA_BUNDLE="$WORK/skewproxy-ca.pem" \
	aws_skewed s3 cp hello.txt "s3://$BUCKET/hello.txt" >"$WORK/proxied.out" 2>&1; then
	tr '\r' '\n' <"$WORK/proxied.out" | grep -v '^Completed\|^$' | tail -1 | sed 's/[[:space:]]*$//' | indent
	if aws_cli --endpoint-url "$S3" s3api head-object --bucket "$BUCKET" --key hello.txt >"$WORK/head.out" 2>&1; then
		ok "uploaded through skewproxy (the object is in S3)"
	else
		bad "the CLI reported success but the object is not in S3: $(cat "$WORK/head.out")"
	fi
else
	indent <"$WORK/proxied.out"
	bad "the upload through skewproxy failed"
fi
WARNLINE=$(grep 'would have failed without skewproxy' "$WORK/proxy.log" | head -1)
if [ -n "$WARNLINE" ]; then
	say "   proxy log: ${WARNLINE#*level=}"
	ok "skewproxy says the request would have failed without it"
else
	bad "no \"would have failed without skewproxy\" line in the proxy log"
fi

# --- 4. /status ---------------------------------------------------------------------
say
bold "4. curl http://$ADMIN/status"
if curl -sf --max-time 10 --noproxy '*' "http://$ADMIN/status" >"$WORK/status.json"; then
	read -r SYNCED SOURCE OFFSET UNC < <(python3 -c 'import json,sys
c=json.load(open(sys.argv[1]))["clock"]; print(c["synced"], c["source"], c["offset_seconds"], c["uncertainty_seconds"])' "$WORK/status.json" 2>/dev/null)
	say "   clock: synced=$SYNCED source=$SOURCE offset_seconds=$OFFSET uncertainty_seconds=$UNC"
	if [ "$SYNCED" = True ] && [ "$SOURCE" = "$NTP" ] &&
		python3 -c 'import sys; sys.exit(0 if abs(float(sys.argv[1])+1200) <= 1 else 1)' "$OFFSET"; then
		ok "skewproxy measured the host clock $(printf '%.1f' "${OFFSET#-}") s behind (NTP from chrony)"
	else
		bad "want synced, source $NTP and an offset of about -1200 s"
	fi
else
	bad "GET /status failed"
fi

# --- 5. presigned URL ---------------------------------------------------------------
say
bold "5. skewproxy presign --clock-offset $SKEW --time-source $NTP --expires 10m s3://$BUCKET/hello.txt | curl"
if URL=$(timeout 30 "$SKEWPROXY" presign --clock-offset "$SKEW" --time-source "$NTP" --endpoint-url "$S3" \
	--expires 10m "s3://$BUCKET/hello.txt" 2>"$WORK/presign.err"); then
	say "   ${URL%%\?*}?X-Amz-Date=$(grep -o 'X-Amz-Date=[0-9TZ]*' <<<"$URL" | cut -d= -f2)&X-Amz-Expires=600&..."
	if curl -sf --max-time 10 --noproxy '*' -o "$WORK/downloaded.txt" "$URL" && cmp -s "$WORK/hello.txt" "$WORK/downloaded.txt"; then
		say "   curl: $(cat "$WORK/downloaded.txt")"
		ok "the presigned URL downloads the file"
	else
		bad "curl could not download the file with the presigned URL: $(curl -s --max-time 10 --noproxy '*' "$URL" | head -c 300)"
	fi
else
	bad "skewproxy presign failed: $(cat "$WORK/presign.err")"
fi
say "   for contrast, signed with the host clock alone (no time source answers):"
if URL=$(timeout 30 "$SKEWPROXY" presign --clock-offset "$SKEW" --time-source ntp://127.0.0.1:1 --time-timeout 300ms \
	--endpoint-url "$S3" --expires 10m "s3://$BUCKET/hello.txt" 2>"$WORK/presign-host.err"); then
	CODE=$(curl -s --max-time 10 --noproxy '*' -o "$WORK/refused.xml" -w '%{http_code}' "$URL")
	MSG=$(grep -o '<Message>[^<]*</Message>' "$WORK/refused.xml" | sed 's/<[^>]*>//g')
	say "   curl: HTTP $CODE $MSG"
	if [ "$CODE" = 403 ] && [ "$MSG" = "Request has expired" ]; then
		ok "refused: a URL signed 20 minutes ago for 10 minutes was dead on arrival"
	else
		bad "want 403 Request has expired for a URL signed with the host clock, got $CODE $MSG"
	fi
else
	bad "skewproxy presign (host clock) failed: $(cat "$WORK/presign-host.err")"
fi

say
if [ "$FAILED" -eq 0 ]; then
	bold "demo passed: every step behaved as described ($(elapsed) s)"
	exit 0
fi
bold "demo FAILED: $FAILED step(s) did not behave as described ($(elapsed) s); rerun with DEMO_VERBOSE=1 for the logs"
exit 1
