// One phase of the side-by-side benchmark (perf/ratios.py): closed-loop virtual users send one kind of
// request as fast as it is answered, each waiting for its answer before the next.
//
//   TARGET=bare BARE_URL=http://127.0.0.1:8010 k6 run --no-usage-report perf/k6/ratios.js
//   TARGET=order_read VUS=32 DURATION=20s k6 run --no-usage-report perf/k6/ratios.js     # against `make up`
//   TARGET=order_create VUS=16 k6 run --no-usage-report perf/k6/ratios.js
//   TARGET=floor FLOOR_URL=http://127.0.0.1:8011 k6 run --no-usage-report perf/k6/ratios.js
//
// TARGET:
// - bare: GET /bare/ of the bare Django project (perf/bare), the ceiling the services are measured against;
// - floor: GET /floor/ with a valid access token: an empty read served with a service's own settings
//   (perf/floor), so the platform's request handling alone, without the order's own work;
// - order_read: GET /api/orders/{id}/ with a valid access token, the caller's own order, placed in setup();
// - order_create: POST /api/orders/ with a unique Idempotency-Key per request, charged through payments.
//
// Environment: AUTH_URL, ORDERS_URL (default: the `make up` ports), BARE_URL, FLOOR_URL, VUS (default 32), DURATION
// (default 20s), USERS (order_create: users logged in during setup, default 4; perf/ratios.py passes --users), SUMMARY_FILE.
import http from 'k6/http';
import { check, fail } from 'k6';
import exec from 'k6/execution';
import {
  REQUEST_TIMEOUT,
  TREND_STATS,
  URLS,
  envInt,
  jsonHeaders,
  runIdentifier,
  summaryOutputs,
  usersLogin,
} from './lib.js';

const TARGET = __ENV.TARGET || 'order_read';
const VUS = envInt('VUS', 32);
const USERS = envInt('USERS', 4);
const DURATION = __ENV.DURATION || '20s';
const BARE_URL = __ENV.BARE_URL || 'http://127.0.0.1:8010';
const FLOOR_URL = __ENV.FLOOR_URL || 'http://127.0.0.1:8011';

const LINES = [
  { sku: 'BOOK-42', quantity: 2, unit_price: 1250 },
  { sku: 'PEN-1', quantity: 1, unit_price: 300 },
];
const TOTAL = 2800;
const FULL_CHECK_EVERY = 16;

if (!['bare', 'floor', 'order_read', 'order_create'].includes(TARGET)) {
  fail(`TARGET must be bare, floor, order_read or order_create, not ${TARGET}`);
}

export const options = {
  scenarios: {
    [TARGET]: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: '10s',
    },
  },
  setupTimeout: '60s',
  summaryTrendStats: TREND_STATS,
  // Errors fail a phase here; whether its speed meets the goals is perf/ratios.py's judgement, made on
  // the ratio to the bare view measured in the same run.
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    // Kept in the summary for perf/ratios.py: the phase's own requests, without setup's.
    [`http_req_failed{name:${TARGET}}`]: ['rate<0.01'],
    [`http_req_duration{name:${TARGET}}`]: ['max>=0'],
  },
};

function orderPlace(token, key, name) {
  return http.post(
    `${URLS.orders}/api/orders/`,
    JSON.stringify({ currency: 'EUR', lines: LINES, payment_method: 'pm_card_visa' }),
    {
      headers: jsonHeaders(token, { 'Idempotency-Key': key }),
      tags: { name },
      timeout: REQUEST_TIMEOUT,
    },
  );
}

export function setup() {
  if (TARGET === 'bare') {
    return {};
  }
  const runId = runIdentifier();
  const users = usersLogin(TARGET === 'order_create' ? USERS : 1, runId);
  if (TARGET === 'order_create') {
    return { runId, users };
  }
  if (TARGET === 'floor') {
    return { token: users[0].token };
  }
  const placed = orderPlace(users[0].token, `ratios-${runId}-setup`, 'setup_order_create');
  if (!check(placed, { 'setup order: 201': (r) => r.status === 201 })) {
    fail(`placing the order to read: ${placed.status} ${placed.body}`);
  }
  return { token: users[0].token, orderId: placed.json('id') };
}

function json(response) {
  try {
    return response.json();
  } catch {
    return null;
  }
}

export default function phase(data) {
  if (TARGET === 'bare') {
    const response = http.get(`${BARE_URL}/bare/`, { tags: { name: 'bare' }, timeout: REQUEST_TIMEOUT });
    check(response, { 'bare: 200': (r) => r.status === 200 });
    return;
  }
  if (TARGET === 'floor') {
    const response = http.get(`${FLOOR_URL}/floor/`, {
      headers: jsonHeaders(data.token),
      tags: { name: 'floor' },
      timeout: REQUEST_TIMEOUT,
    });
    check(response, { 'floor: 200': (r) => r.status === 200 });
    return;
  }
  if (TARGET === 'order_read') {
    const response = http.get(`${URLS.orders}/api/orders/${data.orderId}/`, {
      headers: jsonHeaders(data.token),
      tags: { name: 'order_read' },
      timeout: REQUEST_TIMEOUT,
    });
    // Every answer is checked for the order's id; every FULL_CHECK_EVERY-th is parsed and checked in
    // full. Parsing each one would make k6 itself a large share of the machine's CPU in this phase.
    const full = exec.vu.iterationInScenario % FULL_CHECK_EVERY === 0;
    const order = full ? json(response) : null;
    check(response, {
      'order_read: 200 with the order asked for': (r) =>
        r.status === 200 && typeof r.body === 'string' && r.body.includes(data.orderId),
    });
    if (full) {
      check(response, {
        'order_read: the order asked for, paid, with its lines and history': () =>
          order !== null &&
          order.id === data.orderId &&
          order.status === 'paid' &&
          order.lines.length === LINES.length &&
          order.status_history.length === 2,
      });
    }
    return;
  }
  const user = data.users[exec.vu.idInTest % data.users.length];
  const key = `ratios-${data.runId}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const response = orderPlace(user.token, key, 'order_create');
  const order = json(response);
  check(response, {
    'order_create: 201': (r) => r.status === 201,
    'order_create: paid, with the total and lines sent': () =>
      order !== null && order.status === 'paid' && order.total === TOTAL && order.lines.length === LINES.length,
  });
}

export function handleSummary(data) {
  return summaryOutputs(data);
}
