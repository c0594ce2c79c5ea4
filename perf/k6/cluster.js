// Constant load through the stable Services of a cluster, while releases, rollbacks and pod deletions
// happen: every iteration reads through all four services (an order, the caller, their inbox, a
// payment: each verifies the token), and every ORDER_EVERY-th one places an order (orders calls
// payments, and both relays deliver to notifications). Run by tests/cluster, which stops it with
// SIGINT when its releases are done and judges every request logged before that moment.
//
//   HOSTS='{"auth.platform.svc.cluster.local": "10.215.0.12", ...}' \
//   AUTH_URL=http://auth.platform.svc.cluster.local ... k6 run --console-output=requests.log perf/k6/cluster.js
//
// MODE=logins and MODE=orders are the autoscaling drills' loads (tests/cluster/test_scaling.py):
// every iteration is one password login (auth's CPU: a PBKDF2 hash each) or one order placement
// (orders waiting on payments), nothing else.
//
// Environment: HOSTS (JSON: service host name -> ClusterIP, k6 resolves names with it), AUTH_URL,
// ORDERS_URL, PAYMENTS_URL, NOTIFICATIONS_URL, MODE (mixed, logins or orders; default mixed), RATE
// (iterations started per TIME_UNIT_SECONDS, default 6), TIME_UNIT_SECONDS (default 1: RATE=5 with 2
// is 2.5 a second), ORDER_EVERY (default 6), USERS (default 4), DURATION (an upper bound, default 30m),
// TOKEN_RENEW_AFTER_SECONDS (default 200) and TOKEN_RENEW_SPREAD_SECONDS (default 60: each virtual
// user renews up to this much later), SUMMARY_FILE.
// One JSON line per response goes to the console: {t: end time in ms, n: request name, s: status,
// e: k6 error code, d: duration in ms, v: the X-Request-ID, c: a problem's code, for a status of 400 or
// more that answered problem+json}.
import http from 'k6/http';
import { check, fail } from 'k6';
import exec from 'k6/execution';
import {
  PASSWORD,
  REQUEST_TIMEOUT,
  TREND_STATS,
  URLS,
  envInt,
  jsonHeaders,
  runIdentifier,
  summaryOutputs,
  usersLogin,
} from './lib.js';

const MODE = __ENV.MODE || 'mixed';
if (!['mixed', 'logins', 'orders'].includes(MODE)) {
  throw new Error(`MODE must be mixed, logins or orders, not ${MODE}`);
}
const RATE = envInt('RATE', 6);
const TIME_UNIT_SECONDS = Math.max(1, envInt('TIME_UNIT_SECONDS', 1));
const PER_SECOND = Math.max(1, Math.ceil(RATE / TIME_UNIT_SECONDS));
const ORDER_EVERY = envInt('ORDER_EVERY', 6);
const USERS = envInt('USERS', 4);
const LINES = [{ sku: 'BOOK-42', quantity: 1, unit_price: 1250 }];
// Access tokens live ACCESS_TOKEN_TTL_SECONDS (300 s by default) and a run through every release lasts
// longer: each virtual user logs its user in again when its token is this old. (A refresh token
// shared by several virtual users would be reuse, which revokes the whole login.)
const TOKEN_RENEW_AFTER_MS = envInt('TOKEN_RENEW_AFTER_SECONDS', 200) * 1000;
const TOKEN_RENEW_SPREAD_SECONDS = Math.max(1, envInt('TOKEN_RENEW_SPREAD_SECONDS', 60));
const tokens = {}; // this virtual user's: email -> {token, at}

export const options = {
  hosts: JSON.parse(__ENV.HOSTS || '{}'),
  // Every iteration opens its connections anew, as clients behind an ingress or a load balancer
  // that picks a pod per request: after a switch their traffic reaches the new color within an
  // iteration. (Connections held across a switch stay on the old color: the services' own calls to
  // each other, through their pools, are those.)
  noVUConnectionReuse: true,
  scenarios: {
    through_releases: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: `${TIME_UNIT_SECONDS}s`,
      duration: __ENV.DURATION || '30m',
      preAllocatedVUs: PER_SECOND * 4,
      maxVUs: PER_SECOND * 10,
      gracefulStop: '20s',
    },
  },
  setupTimeout: '120s',
  summaryTrendStats: TREND_STATS,
  // The verdict is the caller's (0 failed requests); these keep a broken run from looking fine.
  thresholds: { http_req_failed: ['rate<0.01'], checks: ['rate>0.99'] },
};

function problemCode(response) {
  if (response.status < 400 || !String(response.headers['Content-Type'] || '').includes('json')) {
    return '';
  }
  try {
    const code = response.json('code');
    return typeof code === 'string' ? code : '';
  } catch (error) {
    return '';
  }
}

function logged(response, name) {
  console.log(
    JSON.stringify({
      t: Date.now(),
      n: name,
      s: response.status,
      e: response.error_code,
      d: Math.round(response.timings.duration * 10) / 10,
      v: response.headers['X-Request-Id'] || '',
      c: problemCode(response),
    }),
  );
  return response;
}

function orderPlace(user, key) {
  const response = http.post(
    `${URLS.orders}/api/orders/`,
    JSON.stringify({ currency: 'EUR', lines: LINES, payment_method: 'pm_card_visa' }),
    { headers: jsonHeaders(user.token, { 'Idempotency-Key': key }), tags: { name: 'order_create' }, timeout: REQUEST_TIMEOUT },
  );
  return logged(response, 'order_create');
}

export function setup() {
  const runId = runIdentifier();
  const users = usersLogin(USERS, runId);
  if (MODE !== 'mixed') {
    return { runId, users: users.map((user) => ({ ...user, issuedAt: Date.now() })) };
  }
  for (const user of users) {
    const placed = orderPlace(user, `${runId}-setup-${user.id}`);
    if (placed.status !== 201) {
      fail(`setup order for ${user.email}: ${placed.status} ${placed.body}`);
    }
    user.orderId = placed.json('id');
    user.paymentId = placed.json('payment_id');
    user.issuedAt = Date.now();
  }
  return { runId, users };
}

function freshToken(user) {
  const held = tokens[user.email] || { token: user.token, at: user.issuedAt };
  // Spread over a minute: the virtual users sharing a user all got its token at the same moment,
  // and renewing together they would be parallel logins of one account from one address, which
  // auth slows down past its free attempts (429) before the first correct one resets the count.
  const spread = ((exec.vu.idInTest * 37) % TOKEN_RENEW_SPREAD_SECONDS) * 1000;
  if (Date.now() - held.at < TOKEN_RENEW_AFTER_MS + spread) {
    return held.token;
  }
  return login(user) || held.token;
}

// A password login of the user: its access token, or null when it was refused.
function login(user) {
  const answer = logged(
    http.post(`${URLS.auth}/api/auth/token/`, JSON.stringify({ email: user.email, password: PASSWORD }), {
      headers: jsonHeaders(),
      tags: { name: 'login' },
      timeout: REQUEST_TIMEOUT,
    }),
    'login',
  );
  if (!check(answer, { 'login: 200': (r) => r.status === 200 })) {
    return null;
  }
  tokens[user.email] = { token: answer.json('access_token'), at: Date.now() };
  return tokens[user.email].token;
}

export default function (data) {
  const iteration = exec.scenario.iterationInTest;
  if (MODE === 'logins') {
    // The users in turn: one user's logins are a rate apart, never parallel guesses of one account.
    login(data.users[iteration % data.users.length]);
    return;
  }
  // One user per virtual user: each renews one token, not one per user it happens to serve (a
  // login is a password hash, and a burst of them would be load of its own).
  const user = { ...data.users[(exec.vu.idInTest - 1) % data.users.length] };
  user.token = freshToken(user);
  if (MODE === 'orders') {
    const placed = orderPlace(user, `${data.runId}-${iteration}`);
    check(placed, { 'order_create: 201': (r) => r.status === 201 });
    return;
  }
  const params = (name) => ({ headers: jsonHeaders(user.token), tags: { name }, timeout: REQUEST_TIMEOUT });
  const reads = [
    ['order_detail', `${URLS.orders}/api/orders/${user.orderId}/`],
    ['me', `${URLS.auth}/api/auth/me/`],
    ['inbox', `${URLS.notifications}/api/notifications/`],
    ['payment_detail', `${URLS.payments}/api/payments/${user.paymentId}/`],
  ];
  for (const [name, url] of reads) {
    const response = logged(http.get(url, params(name)), name);
    check(response, { [`${name}: 200`]: (r) => r.status === 200 });
  }
  if (iteration % ORDER_EVERY === 0) {
    const placed = orderPlace(user, `${data.runId}-${iteration}`);
    check(placed, { 'order_create: 201 paid': (r) => r.status === 201 && r.json('status') === 'paid' });
  }
}

export function handleSummary(data) {
  return summaryOutputs(data);
}
