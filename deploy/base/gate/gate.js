// The release gate's synthetic traffic (python -m deploy.bluegreen promote, in a Job made from the
// PodTemplate bluegreen-gate): the same token-verified reads of one service sent, side by side, to
// the idle color through the preview Service and to the live color through the stable Service, at a
// constant rate, from inside the cluster. The tool compares the two from the last line of output:
//
//   GATE-RESULT {"idle": {"requests", "p95_ms", "server_error_rate", "client_error_rate"}, "live": {...}}
//
// A server error is a 5xx or no answer; a client error a 4xx the read does not expect (payments is
// read by an id no payment has: its 404 is the expected answer, through token verification and
// the database). The reader is a user the gate registers once per run, in the reserved .invalid
// domain. The same reads during a warm-up first are left out of the result: the idle color's pods
// have served nothing yet (each thread's first request opens its database connection), and the
// live color's have been serving for minutes. Environment: SERVICE, IDLE_URL, LIVE_URL, AUTH_URL,
// RATE (reads per second to each color, default 10), WARMUP (default 10s), DURATION (measured,
// default 30s).
import http from 'k6/http';
import { fail, sleep } from 'k6';
import exec from 'k6/execution';
import { Rate, Trend } from 'k6/metrics';

const SERVICE = __ENV.SERVICE;
const RATE = parseInt(__ENV.RATE || '10', 10);
const TARGETS = { idle: __ENV.IDLE_URL, live: __ENV.LIVE_URL };
const READS = {
  auth: [['/api/auth/me/', 200], ['/.well-known/jwks.json', 200]],
  orders: [['/api/orders/', 200]],
  payments: [['/api/payments/00000000-0000-4000-8000-000000000000/', 404]],
  notifications: [['/api/notifications/', 200]],
};
const metrics = {};
for (const target of Object.keys(TARGETS)) {
  metrics[target] = {
    latency: new Trend(`${target}_latency`, true),
    server: new Rate(`${target}_server_errors`),
    client: new Rate(`${target}_client_errors`),
  };
}

const WARMUP = __ENV.WARMUP || '10s';
const reads = (extra) => ({
  executor: 'constant-arrival-rate',
  rate: RATE,
  timeUnit: '1s',
  preAllocatedVUs: RATE * 2,
  maxVUs: RATE * 6,
  ...extra,
});

export const options = {
  scenarios: {
    // gracefulStop 0: a warm-up read still running when the measurement starts is cut, not counted.
    warmup: reads({ duration: WARMUP, gracefulStop: '0s' }),
    gate: reads({ duration: __ENV.DURATION || '30s', startTime: WARMUP, gracefulStop: '15s' }),
  },
  setupTimeout: '60s',
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max', 'count'],
};

const json = (token) => ({
  'Content-Type': 'application/json',
  ...(token ? { Authorization: `Bearer ${token}` } : {}),
});

export function setup() {
  if (!READS[SERVICE] || !TARGETS.idle || !TARGETS.live || !__ENV.AUTH_URL) {
    fail('SERVICE (auth, orders, payments or notifications), IDLE_URL, LIVE_URL and AUTH_URL are required');
  }
  const email = `gate-${Date.now()}-${Math.floor(Math.random() * 1e9)}@gate.invalid`;
  // Random, and nothing like the email (auth refuses a password similar to it).
  const password = [1, 2, 3].map(() => Math.random().toString(36).slice(2, 10)).join('~') + 'Q7!';
  const body = JSON.stringify({ email, password });
  // A new pod's connections can be refused until the cluster's NetworkPolicy controller has
  // programmed the rules for it (seconds): the first request is retried for up to 60 s.
  let registered = http.post(`${__ENV.AUTH_URL}/api/auth/register/`, body, { headers: json(), timeout: '20s' });
  for (let waited = 0; registered.status === 0 && waited < 60; waited += 1) {
    sleep(1);
    registered = http.post(`${__ENV.AUTH_URL}/api/auth/register/`, body, { headers: json(), timeout: '20s' });
  }
  if (registered.status !== 201) {
    fail(`registering the gate's reader: ${registered.status} ${registered.body}`);
  }
  const login = http.post(`${__ENV.AUTH_URL}/api/auth/token/`, body, { headers: json(), timeout: '20s' });
  if (login.status !== 200) {
    fail(`logging the gate's reader in: ${login.status} ${login.body}`);
  }
  return { token: login.json('access_token') };
}

export default function (data) {
  for (const [path, expected] of READS[SERVICE]) {
    for (const [target, base] of Object.entries(TARGETS)) {
      const response = http.get(`${base}${path}`, { headers: json(data.token), timeout: '10s', tags: { target } });
      if (exec.scenario.name !== 'gate') {
        continue;
      }
      const status = response.status;
      metrics[target].latency.add(response.timings.duration);
      metrics[target].server.add(status === 0 || status >= 500);
      metrics[target].client.add(status >= 400 && status < 500 && status !== expected);
    }
  }
}

export function handleSummary(data) {
  const result = {};
  for (const target of Object.keys(TARGETS)) {
    const latency = data.metrics[`${target}_latency`];
    result[target] = {
      requests: latency ? latency.values.count : 0,
      p95_ms: latency ? latency.values['p(95)'] : null,
      server_error_rate: data.metrics[`${target}_server_errors`] ? data.metrics[`${target}_server_errors`].values.rate : null,
      client_error_rate: data.metrics[`${target}_client_errors`] ? data.metrics[`${target}_client_errors`].values.rate : null,
    };
  }
  return { stdout: `GATE-RESULT ${JSON.stringify(result)}\n` };
}
