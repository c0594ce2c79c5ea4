// The journey of journey.js at a constant arrival rate, for the failure drills (perf/drills.py).
// No thresholds: a drill expects some requests to fail while its fault lasts, and judges every
// request by when it was sent and what it got, from k6's JSON output (--out json=...).
//
// Environment: as journey.js (AUTH_URL, ORDERS_URL, NOTIFICATIONS_URL, RATE, DURATION, USERS,
// MAX_VUS, SUMMARY_FILE).
import journey, { setup as journeySetup } from './journey.js';
import { TREND_STATS, envInt, summaryOutputs } from './lib.js';

const RATE = envInt('RATE', 4);
const MAX_VUS = envInt('MAX_VUS', 60);

export const options = {
  scenarios: {
    drill: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: Math.min(MAX_VUS, RATE * 4),
      maxVUs: MAX_VUS,
      gracefulStop: '35s',
    },
  },
  setupTimeout: '60s',
  summaryTrendStats: TREND_STATS,
};

export function setup() {
  return journeySetup();
}

export default function drill(data) {
  journey(data);
}

export function handleSummary(data) {
  return summaryOutputs(data);
}
