// Token verification throughput: closed-loop virtual users read the orders list with one fixed access
// token, as fast as orders answers. Orders verifies the RS256 signature locally against auth's cached
// JWKS on every request, so the achieved rate is what one orders server sustains for the cheapest
// authenticated read (a user with no orders: verification, DRF, one COUNT query).
//
//   k6 run --no-usage-report perf/k6/auth.js                            # against `make up`
//
// Environment: AUTH_URL, ORDERS_URL (default: the `make up` ports on 127.0.0.1), VUS (default 8:
// orders' 2 workers x 4 threads), DURATION (default 30s), SUMMARY_FILE (the summary as JSON).
import http from 'k6/http';
import { check } from 'k6';
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

const VUS = envInt('VUS', 8);
const DURATION = __ENV.DURATION || '30s';

export const options = {
  scenarios: {
    verify: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: '10s',
    },
  },
  setupTimeout: '30s',
  summaryTrendStats: TREND_STATS,
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    // With every VU always waiting on a request, latency is VUS / throughput: 8 VUs over 100 ms means
    // fewer than 80 verified reads a second, too few for the cheapest authenticated call there is.
    'http_req_duration{name:token_verified_read}': latencyThreshold('p(95)<100'),
  },
};

export function setup() {
  const [user] = usersLogin(1, runIdentifier());
  return { token: user.token };
}

export default function verify(data) {
  const response = http.get(`${URLS.orders}/api/orders/?page_size=1`, {
    headers: jsonHeaders(data.token),
    tags: { name: 'token_verified_read' },
    timeout: REQUEST_TIMEOUT,
  });
  let page = null;
  try {
    page = response.json();
  } catch {
    page = null;
  }
  check(response, {
    'token_verified_read: 200': (r) => r.status === 200,
    "token_verified_read: the caller's empty order list": () =>
      page !== null && page.count === 0 && Array.isArray(page.results) && page.results.length === 0,
  });
}

export function handleSummary(data) {
  return summaryOutputs(data);
}
