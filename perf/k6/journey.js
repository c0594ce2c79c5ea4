// The customer journey under a steady arrival rate: place an order (most paid, every fifth declined),
// list the caller's orders, read the new one, read the inbox. Users log in once, in setup().
//
//   k6 run --no-usage-report perf/k6/journey.js                        # against `make up`
//   RATE=8 DURATION=45s SUMMARY_FILE=summary.json k6 run --no-usage-report perf/k6/journey.js
//
// Environment: AUTH_URL, ORDERS_URL, NOTIFICATIONS_URL (default: the `make up` ports on 127.0.0.1),
// RATE (journeys started per second, default 10), DURATION (default 60s), USERS (default 5),
// MAX_VUS (default 40), SUMMARY_FILE (the summary as JSON).
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import {
  REQUEST_TIMEOUT,
  TREND_STATS,
  URLS,
  envInt,
  jsonHeaders,
  latencyThreshold,
  runIdentifier,
  summaryOutputs,
  usersLogin,
} from './lib.js';

const RATE = envInt('RATE', 10);
const USERS = envInt('USERS', 5);
const MAX_VUS = envInt('MAX_VUS', 40);
const DURATION = __ENV.DURATION || '60s';
// One journey in DECLINE_EVERY pays with a card the simulated provider declines.
const DECLINE_EVERY = 5;

const LINES = [
  { sku: 'BOOK-42', quantity: 2, unit_price: 1250 },
  { sku: 'PEN-1', quantity: 1, unit_price: 300 },
];
const TOTAL = 2800;

export const options = {
  scenarios: {
    journey: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(MAX_VUS, RATE * 2),
      maxVUs: MAX_VUS,
      // Journeys still running when the duration ends get this long, then are cut: the run stays bounded.
      gracefulStop: '20s',
    },
  },
  setupTimeout: '60s',
  summaryTrendStats: TREND_STATS,
  thresholds: {
    // Any transport error or unexpected status (k6 counts 4xx/5xx as failed) above 1% fails the run.
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    // Placing an order is two services and two databases in series (orders stores it, payments
    // charges it under its idempotency record, both write an outbox row): it gets the widest budget.
    'http_req_duration{name:order_create}': latencyThreshold('p(95)<800'),
    // Reads are one service and a couple of indexed queries.
    'http_req_duration{name:order_list}': latencyThreshold('p(95)<300'),
    'http_req_duration{name:order_detail}': latencyThreshold('p(95)<300'),
    'http_req_duration{name:inbox}': latencyThreshold('p(95)<300'),
  },
};

export function setup() {
  const runId = runIdentifier();
  return { runId, users: usersLogin(USERS, runId) };
}

function body(response) {
  try {
    return response.json();
  } catch {
    return null;
  }
}

function get(url, token, name) {
  return http.get(url, { headers: jsonHeaders(token), tags: { name }, timeout: REQUEST_TIMEOUT });
}

export default function journey(data) {
  const iteration = exec.scenario.iterationInTest;
  const user = data.users[iteration % data.users.length];
  const declined = iteration % DECLINE_EVERY === DECLINE_EVERY - 1;

  const created = http.post(
    `${URLS.orders}/api/orders/`,
    JSON.stringify({ currency: 'EUR', lines: LINES, payment_method: declined ? 'pm_card_declined' : 'pm_card_visa' }),
    {
      headers: jsonHeaders(user.token, { 'Idempotency-Key': `k6-${data.runId}-${iteration}` }),
      tags: { name: 'order_create' },
      timeout: REQUEST_TIMEOUT,
    },
  );
  const order = body(created);
  check(created, {
    'order_create: 201': (r) => r.status === 201,
    'order_create: paid, or payment_failed on the declined card': () =>
      order !== null && order.status === (declined ? 'payment_failed' : 'paid'),
    'order_create: total, currency and lines as sent': () =>
      order !== null && order.total === TOTAL && order.currency === 'EUR' && order.lines.length === LINES.length,
  });

  const listed = get(`${URLS.orders}/api/orders/?page_size=10`, user.token, 'order_list');
  const page = body(listed);
  check(listed, {
    'order_list: 200': (r) => r.status === 200,
    "order_list: a page with the caller's orders": () =>
      page !== null && page.count >= 1 && Array.isArray(page.results) && page.results.length >= 1,
  });

  const orderId = order && order.id ? order.id : page && page.results && page.results[0] && page.results[0].id;
  if (orderId) {
    const read = get(`${URLS.orders}/api/orders/${orderId}/`, user.token, 'order_detail');
    const detail = body(read);
    check(read, {
      'order_detail: 200': (r) => r.status === 200,
      'order_detail: the order asked for, with its history': () =>
        detail !== null && detail.id === orderId && Array.isArray(detail.status_history),
    });
  }

  // The inbox fills as the outbox relays deliver; without relays it is empty, which is still a valid page.
  const inbox = get(`${URLS.notifications}/api/notifications/?page_size=10`, user.token, 'inbox');
  const notifications = body(inbox);
  check(inbox, {
    'inbox: 200': (r) => r.status === 200,
    'inbox: a page of order and payment notifications': () =>
      notifications !== null &&
      typeof notifications.count === 'number' &&
      Array.isArray(notifications.results) &&
      notifications.results.every((item) => /^(order|payment)\./.test(item.type)),
  });
}

export function handleSummary(data) {
  return summaryOutputs(data);
}
