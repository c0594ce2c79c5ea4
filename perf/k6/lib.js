// Shared pieces of the k6 scenarios: where the services are, how users log in, how results are written.
import http from 'k6/http';
import { check, fail } from 'k6';

// The `make up` ports unless the caller says otherwise. Only 127.0.0.1 is ever targeted.
export const URLS = {
  auth: __ENV.AUTH_URL || 'http://127.0.0.1:8001',
  orders: __ENV.ORDERS_URL || 'http://127.0.0.1:8002',
  payments: __ENV.PAYMENTS_URL || 'http://127.0.0.1:8003',
  notifications: __ENV.NOTIFICATIONS_URL || 'http://127.0.0.1:8004',
};

export const PASSWORD = 'correct horse battery staple';

// Longer than orders' own worst case (a token fetch plus a retried charge, 27.0 s, see
// platform/gunicorn.conf.py): a caller that gives up earlier only adds retries to an overloaded service.
export const REQUEST_TIMEOUT = '30s';

// Trend statistics kept in the summary: p(99) is not among k6's defaults.
export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];

// A smoke run (LATENCY_THRESHOLDS=off, as `make test` runs the scenarios for a few seconds on a busy
// machine) proves that a scenario works: its error-rate and checks thresholds still apply, but speed is
// judged by benchmark runs only. `max>=0` always holds; it keeps the tagged sub-metric in the summary.
export function latencyThreshold(expression) {
  return __ENV.LATENCY_THRESHOLDS === 'off' ? ['max>=0'] : [expression];
}

export function envInt(name, fallback) {
  const value = __ENV[name];
  if (value === undefined || value === '') {
    return fallback;
  }
  const parsed = parseInt(value, 10);
  if (!Number.isInteger(parsed) || parsed < 1) {
    fail(`${name} must be a positive integer, got ${value}`);
  }
  return parsed;
}

export function jsonHeaders(token, extra) {
  const headers = { 'Content-Type': 'application/json', ...(extra || {}) };
  if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  return headers;
}

// Registers `count` fresh users and logs each in once. Logging in hashes the password (about half a
// second of CPU each on a 2-core machine), which is why this runs in setup() and never per iteration.
export function usersLogin(count, runId) {
  const users = [];
  for (let index = 0; index < count; index += 1) {
    const email = `k6-${runId}-${index}@example.com`;
    const body = JSON.stringify({ email, password: PASSWORD });
    const registered = http.post(`${URLS.auth}/api/auth/register/`, body, {
      headers: jsonHeaders(),
      tags: { name: 'setup_register' },
      timeout: REQUEST_TIMEOUT,
    });
    if (!check(registered, { 'register: 201': (r) => r.status === 201 })) {
      fail(`register ${email}: ${registered.status} ${registered.body}`);
    }
    const token = http.post(`${URLS.auth}/api/auth/token/`, body, {
      headers: jsonHeaders(),
      tags: { name: 'setup_login' },
      timeout: REQUEST_TIMEOUT,
    });
    if (!check(token, { 'login: 200 with an access token': (r) => r.status === 200 && !!r.json('access_token') })) {
      fail(`login ${email}: ${token.status} ${token.body}`);
    }
    users.push({ email, id: registered.json('id'), token: token.json('access_token') });
  }
  return users;
}

// A run id that keeps emails and idempotency keys of two runs against one database apart.
export function runIdentifier() {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e9).toString(36)}`;
}

// handleSummary() helper: the whole summary as JSON in SUMMARY_FILE (for perf/bench.py and the smoke
// test), and a short text on stdout. The text is built here because k6's textSummary lives in a
// remote jslib, and these scenarios never reach beyond 127.0.0.1.
export function summaryOutputs(data) {
  const outputs = { stdout: summaryText(data) };
  if (__ENV.SUMMARY_FILE) {
    outputs[__ENV.SUMMARY_FILE] = JSON.stringify(data, null, 2);
  }
  return outputs;
}

function summaryText(data) {
  const lines = [''];
  const metrics = data.metrics;
  for (const [name, metric] of Object.entries(metrics)) {
    for (const [expression, result] of Object.entries(metric.thresholds || {})) {
      lines.push(`${result.ok ? 'ok  ' : 'FAIL'} ${name} ${expression}`);
    }
  }
  if (metrics.checks) {
    const { passes, fails } = metrics.checks.values;
    lines.push(`checks: ${passes} passed, ${fails} failed`);
  }
  if (metrics.http_reqs) {
    lines.push(`http_reqs: ${metrics.http_reqs.values.count} (${metrics.http_reqs.values.rate.toFixed(1)}/s)`);
  }
  for (const [name, metric] of Object.entries(metrics)) {
    if (name.startsWith('http_req_duration{') && metric.values) {
      const v = metric.values;
      lines.push(
        `${name}: n=${v.count} med=${v.med.toFixed(1)}ms p95=${v['p(95)'].toFixed(1)}ms p99=${v['p(99)'].toFixed(1)}ms`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
